"""Deleting trashed rows for good: every function takes the connection and the owner's
`user_id`, like the rest of the data layer. The operators' purge across users
(`graphql_api.purge`) calls `empty_trash` once per user."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from graphql_api.models import CONVERSATIONS, TAGS, TASKS


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


def _delete_trashed(
    conn: Connection, table: sa.Table, user_id: str, trashed_before: datetime | None
) -> int:
    conditions = [table.c.user_id == user_id, table.c.deleted_at.is_not(None)]
    if trashed_before is not None:
        conditions.append(table.c.deleted_at < trashed_before)
    count: int = conn.execute(sa.delete(table).where(*conditions)).rowcount
    return count


def empty_trash(
    conn: Connection, user_id: str, *, trashed_before: datetime | None = None
) -> TrashCounts:
    """Delete the user's trashed tasks, tags and conversations for good (only those trashed
    before `trashed_before`, if given). What they leave behind goes with them, by the foreign
    keys' ON DELETE CASCADE, in the same statement: the tag links of the tasks and of the
    tags, the subtask links on either side of the tasks (their live subtasks and parents
    stay, without that link), the messages of the conversations. Live rows are untouched."""
    return TrashCounts(
        tasks=_delete_trashed(conn, TASKS, user_id, trashed_before),
        tags=_delete_trashed(conn, TAGS, user_id, trashed_before),
        conversations=_delete_trashed(conn, CONVERSATIONS, user_id, trashed_before),
    )
