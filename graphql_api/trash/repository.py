"""Deleting trashed rows for good: every function takes the connection and the owner's
`user_id`, like the rest of the data layer. The operators' purge across users
(`graphql_api.purge`) calls `empty_trash` once per user."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from graphql_api.changes.record import TypeName, note
from graphql_api.models import CONVERSATIONS, MESSAGES, TAGS, TASKS


@dataclass(frozen=True)
class TrashCounts:
    """Trashed rows deleted for good, per kind."""

    tasks: int = 0
    tags: int = 0
    conversations: int = 0

    @property
    def total(self) -> int:
        return self.tasks + self.tags + self.conversations

    def __add__(self, other: TrashCounts) -> TrashCounts:
        return TrashCounts(
            self.tasks + other.tasks,
            self.tags + other.tags,
            self.conversations + other.conversations,
        )


def _trashed(
    table: sa.Table, user_id: str, trashed_before: datetime | None
) -> list[sa.ColumnElement[bool]]:
    conditions = [table.c.user_id == user_id, table.c.deleted_at.is_not(None)]
    if trashed_before is not None:
        conditions.append(table.c.deleted_at < trashed_before)
    return conditions


def _delete_trashed(
    conn: Connection,
    table: sa.Table,
    type_name: TypeName,
    user_id: str,
    trashed_before: datetime | None,
) -> int:
    deleted = conn.execute(
        sa.delete(table).where(*_trashed(table, user_id, trashed_before)).returning(table.c.id)
    )
    ids = list(deleted.scalars())
    note(conn, user_id, "DELETED", type_name, ids)
    return len(ids)


def _delete_messages_of_trashed(
    conn: Connection, user_id: str, trashed_before: datetime | None
) -> None:
    """The messages of the conversations about to go: deleted first, by this statement rather
    than by the cascade, so the change feed learns their ids."""
    conversations = sa.select(CONVERSATIONS.c.id).where(
        *_trashed(CONVERSATIONS, user_id, trashed_before)
    )
    deleted = conn.execute(
        sa.delete(MESSAGES)
        .where(MESSAGES.c.user_id == user_id, MESSAGES.c.conversation_id.in_(conversations))
        .returning(MESSAGES.c.id)
    )
    note(conn, user_id, "DELETED", "Message", list(deleted.scalars()))


def empty_trash(
    conn: Connection, user_id: str, *, trashed_before: datetime | None = None
) -> TrashCounts:
    """Delete the user's trashed tasks, tags and conversations for good (only those trashed
    before `trashed_before`, if given). What they leave behind goes with them, in the same
    transaction: the tag links of the tasks and of the tags, the subtask links on either side
    of the tasks (their live subtasks and parents stay, without that link), by the foreign
    keys' ON DELETE CASCADE; the messages of the conversations. Live rows are untouched. The
    change feed records a DELETED for every task, tag, conversation and message that went."""
    _delete_messages_of_trashed(conn, user_id, trashed_before)
    return TrashCounts(
        tasks=_delete_trashed(conn, TASKS, "Task", user_id, trashed_before),
        tags=_delete_trashed(conn, TAGS, "Tag", user_id, trashed_before),
        conversations=_delete_trashed(conn, CONVERSATIONS, "Conversation", user_id, trashed_before),
    )
