"""Conversations and their messages: every function takes the connection and `user_id`."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from graphql_api.changes.record import Kind, note
from graphql_api.errors import Conflict, NotFound
from graphql_api.models import (
    CONVERSATIONS,
    MESSAGES,
    ConversationFields,
    MessageFields,
    utcnow,
)
from graphql_api.pagination import (
    Ordering,
    Page,
    PageArgs,
    Query,
    SortKey,
    fetch_page,
    fetch_pages,
)
from graphql_api.sql import Record, Statement, owned_by_ids, position, rows_by_key
from graphql_api.validation import changes_of, check_unchanged, validate

CONVERSATION_ORDERING = Ordering(
    "conversations:activity",
    (
        SortKey(
            CONVERSATIONS.c.updated_at,
            descending=True,
            dump=datetime.isoformat,
            load=datetime.fromisoformat,
        ),
        SortKey(CONVERSATIONS.c.id, descending=True, dump=str, load=uuid.UUID),
    ),
)
MESSAGE_ORDERING = Ordering(
    "messages:chronological",
    (
        SortKey(MESSAGES.c.created_at, dump=datetime.isoformat, load=datetime.fromisoformat),
        SortKey(MESSAGES.c.id, dump=str, load=uuid.UUID),
    ),
)


ID = position(CONVERSATIONS, "id")
MESSAGE_ID = position(MESSAGES, "id")


def _live_of_user() -> list[sa.ColumnElement[bool]]:
    """The user's (parameter `user_id`) live conversations (for fixed statements)."""
    return [
        CONVERSATIONS.c.user_id == sa.bindparam("user_id"),
        CONVERSATIONS.c.deleted_at.is_(None),
    ]


def _trashed_of_user() -> list[sa.ColumnElement[bool]]:
    """The user's (parameter `user_id`) conversations in the trash."""
    return [
        CONVERSATIONS.c.user_id == sa.bindparam("user_id"),
        CONVERSATIONS.c.deleted_at.is_not(None),
    ]


_BY_IDS = owned_by_ids(CONVERSATIONS)


def get_conversations(
    conn: Connection, user_id: str, ids: Iterable[uuid.UUID]
) -> dict[Any, Record]:
    """The user's conversations with these ids, live or in the trash (as tasks), by id."""
    return rows_by_key(_BY_IDS, conn, user_id, ids, ID)


def _conversations() -> sa.Select[Any]:
    return sa.select(CONVERSATIONS).where(*_live_of_user())


def _trashed_conversations() -> sa.Select[Any]:
    return sa.select(CONVERSATIONS).where(*_trashed_of_user())


def list_conversations(
    conn: Connection, user_id: str, page: PageArgs, *, deleted: bool = False, counted: bool = False
) -> Page:
    """Live conversations (with `deleted`, the trash), the most recently active first;
    `counted`: with their number (`Page.total`)."""
    if deleted:
        query = Query("conversations:trash", _trashed_conversations, {"user_id": user_id})
    else:
        query = Query("conversations", _conversations, {"user_id": user_id})
    return fetch_page(conn, query, CONVERSATION_ORDERING, page, counted=counted)


_COUNT = Statement(
    lambda: sa.select(sa.func.count()).select_from(CONVERSATIONS).where(*_live_of_user())
)
_COUNT_TRASHED = Statement(
    lambda: sa.select(sa.func.count()).select_from(CONVERSATIONS).where(*_trashed_of_user())
)


def count_conversations(conn: Connection, user_id: str, *, deleted: bool = False) -> int:
    statement = _COUNT_TRASHED if deleted else _COUNT
    count: int = statement.run(conn, user_id=user_id)[0][0]
    return count


_MESSAGES_BY_IDS = owned_by_ids(MESSAGES)


def get_messages(conn: Connection, user_id: str, ids: Iterable[uuid.UUID]) -> dict[Any, Record]:
    """The user's messages with these ids (their conversation live or in the trash), by id."""
    return rows_by_key(_MESSAGES_BY_IDS, conn, user_id, ids, MESSAGE_ID)


def _messages() -> sa.Select[Any]:
    return sa.select(MESSAGES).where(MESSAGES.c.user_id == sa.bindparam("user_id"))


def messages_of_conversations(
    conn: Connection, user_id: str, conversation_ids: Iterable[uuid.UUID], page: PageArgs
) -> dict[Any, Page]:
    """The same page of messages for each conversation, oldest first: one statement."""
    return fetch_pages(
        conn,
        Query("messages", _messages, {"user_id": user_id}),
        MESSAGE_ORDERING,
        page,
        parent=MESSAGES.c.conversation_id,
        parent_ids=conversation_ids,
    )


_MESSAGE_COUNTS = Statement(
    lambda: (
        sa.select(MESSAGES.c.conversation_id, sa.func.count())
        .where(
            MESSAGES.c.user_id == sa.bindparam("user_id"),
            MESSAGES.c.conversation_id.in_(sa.bindparam("ids", expanding=True)),
        )
        .group_by(MESSAGES.c.conversation_id)
    )
)


def count_messages_of_conversations(
    conn: Connection, user_id: str, conversation_ids: Iterable[uuid.UUID]
) -> dict[Any, int]:
    conversation_ids = list(conversation_ids)
    if not conversation_ids:
        return {}
    counts = dict.fromkeys(conversation_ids, 0)
    counts.update(
        (row[0], row[1]) for row in _MESSAGE_COUNTS.run(conn, user_id=user_id, ids=conversation_ids)
    )
    return counts


def _lock(conn: Connection, user_id: str, conversation_id: uuid.UUID) -> RowMapping:
    """The conversation, live or trashed, locked for this transaction; NOT_FOUND if missing."""
    query = sa.select(CONVERSATIONS).where(
        CONVERSATIONS.c.user_id == user_id, CONVERSATIONS.c.id == conversation_id
    )
    row = conn.execute(query.with_for_update()).mappings().first()
    if row is None:
        raise NotFound("Conversation")
    return row


def _lock_live(conn: Connection, user_id: str, conversation_id: uuid.UUID) -> RowMapping:
    """The live conversation, locked; NOT_FOUND if missing, CONFLICT if trashed (as tasks)."""
    row = _lock(conn, user_id, conversation_id)
    if row["deleted_at"] is not None:
        raise Conflict("The conversation is in the trash: restore it first.")
    return row


def _update(
    conn: Connection,
    user_id: str,
    conversation_id: uuid.UUID,
    values: dict[str, Any],
    kind: Kind = "UPDATED",
) -> RowMapping:
    note(conn, user_id, kind, "Conversation", conversation_id)
    return (
        conn.execute(
            sa.update(CONVERSATIONS)
            .where(CONVERSATIONS.c.user_id == user_id, CONVERSATIONS.c.id == conversation_id)
            .values(**values)
            .returning(CONVERSATIONS)
        )
        .mappings()
        .one()
    )


def create_conversation(conn: Connection, user_id: str, fields: dict[str, Any]) -> RowMapping:
    values = validate(ConversationFields, fields).model_dump()
    now = utcnow()
    conversation_id = uuid.uuid4()
    note(conn, user_id, "CREATED", "Conversation", conversation_id)
    return (
        conn.execute(
            sa.insert(CONVERSATIONS)
            .values(**values, user_id=user_id, id=conversation_id, created_at=now, updated_at=now)
            .returning(CONVERSATIONS)
        )
        .mappings()
        .one()
    )


def update_conversation(
    conn: Connection,
    user_id: str,
    conversation_id: uuid.UUID,
    changes: dict[str, Any],
    expected_updated_at: datetime | None = None,
) -> RowMapping:
    current = _lock_live(conn, user_id, conversation_id)
    check_unchanged(current, expected_updated_at)
    values = changes_of(ConversationFields, dict(current), changes)
    if not values:
        return current
    return _update(conn, user_id, conversation_id, {**values, "updated_at": utcnow()})


def delete_conversation(conn: Connection, user_id: str, conversation_id: uuid.UUID) -> RowMapping:
    """Move the conversation (and so its messages) to the trash (idempotent). Its `updatedAt`
    stays: it is the latest activity, which orders the lists (the trash too)."""
    current = _lock(conn, user_id, conversation_id)
    if current["deleted_at"] is not None:
        return current
    return _update(conn, user_id, conversation_id, {"deleted_at": utcnow()}, "DELETED")


def restore_conversation(conn: Connection, user_id: str, conversation_id: uuid.UUID) -> RowMapping:
    """Bring the conversation and its messages back from the trash (idempotent)."""
    current = _lock(conn, user_id, conversation_id)
    if current["deleted_at"] is None:
        return current
    return _update(conn, user_id, conversation_id, {"deleted_at": None}, "RESTORED")


def post_message(
    conn: Connection, user_id: str, conversation_id: uuid.UUID, fields: dict[str, Any]
) -> RowMapping:
    """Append a message; the conversation's `updated_at` moves to it (latest activity)."""
    values = validate(MessageFields, fields).model_dump()
    _lock_live(conn, user_id, conversation_id)
    now = utcnow()
    message_id = uuid.uuid4()
    note(conn, user_id, "CREATED", "Message", message_id)
    message = (
        conn.execute(
            sa.insert(MESSAGES)
            .values(
                **values,
                user_id=user_id,
                id=message_id,
                conversation_id=conversation_id,
                created_at=now,
            )
            .returning(MESSAGES)
        )
        .mappings()
        .one()
    )
    _update(conn, user_id, conversation_id, {"updated_at": now})
    return message
