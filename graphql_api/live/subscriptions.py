"""The Subscription root: your change feed, live, and the new messages of a conversation.

Both read the change feed (`graphql_api.changes`), the source of truth: a notification only
says "read". A subscription registers with the process's hub BEFORE it first reads, so every
commit lands either in a read or in a notification after it (no gap), and it always reads
after the last position it read (nothing twice). Each read is a short transaction of its own
through the scoped data layer; between reads a subscription holds no database connection.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Annotated

import strawberry
from sqlalchemy.engine import Connection
from strawberry.types.nodes import SelectedField, Selection

from graphql_api.changes import cursor
from graphql_api.changes.repository import ChangeRecord, changes_after, last_seq
from graphql_api.changes.types import Change
from graphql_api.context import Info
from graphql_api.conversations.types import Message
from graphql_api.errors import ServiceUnavailable, Unauthenticated
from graphql_api.live.websocket import FORBIDDEN, TOO_SLOW, TRY_AGAIN_LATER, LiveContext
from graphql_api.loaders import load_all, load_existing
from graphql_api.relay import decode_uuid

PAGE = 100
"""Changes read at a time."""

Since = Annotated[
    str | None,
    strawberry.argument(
        description="A `cursor` (of the `changes` query, or of a `Change` received before): "
        "first the changes after it, then the new ones. Null: the new ones only. "
        "CURSOR_EXPIRED when the changes after it are no longer kept: refetch, then subscribe "
        "with the cursor the `changes` query answers."
    ),
]
ConversationId = Annotated[
    strawberry.ID, strawberry.argument(description="The conversation's global ID.")
]


def _live(info: Info) -> LiveContext:
    context = info.context
    assert isinstance(context, LiveContext)  # `RequestGuard` refuses subscriptions elsewhere
    return context


@strawberry.type(
    description="Live updates, over a WebSocket on /graphql with the graphql-transport-ws "
    'protocol: send your token in `connection_init`\'s payload, `{"Authorization": "Bearer '
    '<token>"}`. Close codes: 4401 no token, 4403 a bad, expired or signed-out token, 4029 '
    "too many connections, 4013 too slow to read (reconnect and resume from your last "
    "cursor), 1013 the database is unavailable (retry)."
)
class Subscription:
    @strawberry.subscription(
        description="Your change feed, live: the changes after `since`, then each change as "
        "it commits; in commit order, none missed, none twice. To resume after a "
        "disconnection, subscribe again with the `cursor` of the last change you received."
    )
    async def changes(self, info: Info, since: Since = None) -> AsyncGenerator[Change, None]:
        context = _live(info)
        start = await context.db.read(_start, None if since is None else cursor.decode(since))
        return _changes(context, start, with_nodes=_selects(info, "node"))

    @strawberry.subscription(
        description="The messages posted to one conversation from now on, oldest first (for "
        "chat screens). NOT_FOUND if you have no such conversation; ends when the "
        "conversation is deleted for good."
    )
    async def message_posted(
        self, info: Info, conversation_id: ConversationId
    ) -> AsyncGenerator[Message, None]:
        context = _live(info)
        row_id = decode_uuid(conversation_id, "Conversation")
        await load_existing(context.loaders.conversation_by_id, row_id, "Conversation")
        return _messages(context, row_id, await context.db.read(last_seq))


def _start(connection: Connection, user_id: str, since: int | None) -> int:
    """The position to read after: `since` (CURSOR_EXPIRED if it is not kept), or now."""
    if since is None:
        return last_seq(connection, user_id)
    changes_after(connection, user_id, since, 0)  # checks the cursor, reads no change
    return since


def _selects(info: Info, name: str) -> bool:
    """Whether the field's selection (fragments included) asks for a field `name`."""
    pending: list[Selection] = [s for field in info.selected_fields for s in field.selections]
    while pending:
        selection = pending.pop()
        if isinstance(selection, SelectedField) and selection.name == name:
            return True
        if not isinstance(selection, SelectedField):
            pending += selection.selections
    return False


async def _changes(
    context: LiveContext, start: int, *, with_nodes: bool
) -> AsyncGenerator[Change, None]:
    async with aclosing(_pages(context, start)) as pages:
        async for records in pages:
            if with_nodes:
                await _load_nodes(context, records)
            for record in records:
                yield Change.from_record(record)


async def _load_nodes(context: LiveContext, records: list[ChangeRecord]) -> None:
    """Load a page's objects in one statement per type, into the loaders each change's
    `node` reads from: its changes then go out without a database round trip each."""
    loaders = context.loaders
    by_type = {
        "Task": loaders.task_by_id,
        "Tag": loaders.tag_by_id,
        "Conversation": loaders.conversation_by_id,
        "Message": loaders.message_by_id,
    }
    for type_name, loader in by_type.items():
        ids = [record.object_id for record in records if record.type == type_name]
        if ids:
            await load_all(loader, ids)


async def _messages(
    context: LiveContext, conversation_id: uuid.UUID, start: int
) -> AsyncGenerator[Message, None]:
    async with aclosing(_pages(context, start)) as pages:
        async for records in pages:
            posted = [r.object_id for r in records if r.type == "Message" and r.kind == "CREATED"]
            rows = [row for row in await load_all(context.loaders.message_by_id, posted) if row]
            messages = [Message.from_row(row) for row in rows]
            messages = [m for m in messages if m.conversation_id == conversation_id]
            if messages:  # their `conversation`, loaded once for the page
                await context.loaders.conversation_by_id.load(conversation_id)
            for message in messages:
                yield message
            if any(
                r.type == "Conversation" and r.kind == "DELETED" and r.object_id == conversation_id
                for r in records
            ) and (await context.loaders.conversation_by_id.load(conversation_id) is None):
                return  # deleted for good (the trash keeps it: it may come back)


async def _pages(context: LiveContext, start: int) -> AsyncGenerator[list[ChangeRecord], None]:
    """The user's changes after `start`, a page at a time: those committed already, then
    those of each commit as the hub announces it. When the token stops working or the
    database is unavailable, the connection closes (4403, 1013): the client resumes later."""
    socket = context.socket
    subscriber = None
    try:
        subscriber = await context.hub.subscribe(
            context.user_id,
            lambda: socket.close_soon(
                TOO_SLOW, "Too slow: reconnect and resume from your last cursor"
            ),
        )
        position = start
        while True:
            # A transaction per read: a fresh snapshot, and the token checked again.
            await context.db.release()
            context.renew_loaders()
            records = await context.db.read(changes_after, position, PAGE)
            if records:
                yield records
                position = records[-1].seq
            if len(records) == PAGE:
                subscriber.drain()  # the next read covers what they announce
                continue
            await context.db.release()
            await subscriber.changed_after(position)
    except Unauthenticated as exc:  # signed out, or the account deleted, meanwhile
        socket.close_soon(FORBIDDEN, f"Forbidden: {exc.message}")
    except ServiceUnavailable:
        socket.close_soon(TRY_AGAIN_LATER, "The database is unavailable: retry shortly.")
    finally:
        if subscriber is not None:
            context.hub.unsubscribe(subscriber)
