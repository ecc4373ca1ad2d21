"""Read operations of the conversations domain."""

from __future__ import annotations

from typing import Annotated

import strawberry

from graphql_api.context import Info
from graphql_api.conversations import repository as conversations
from graphql_api.conversations.types import Conversation
from graphql_api.loaders import load_by_global_id
from graphql_api.relay import (
    After,
    Before,
    Connection,
    First,
    Last,
    page_args,
    selects_total_count,
    to_connection,
)


@strawberry.input(description="Which conversations to list.")
class ConversationFilter:
    deleted: bool = strawberry.field(
        default=False,
        description="List the trash (deleted conversations) instead of live conversations.",
    )


FilterArg = Annotated[
    ConversationFilter | None,
    strawberry.argument(description="Which conversations to list; the live ones if null."),
]


async def resolve_conversations(
    info: Info,
    first: First = None,
    after: After = None,
    last: Last = None,
    before: Before = None,
    filter: FilterArg = None,
) -> Connection[Conversation]:
    """The caller's live conversations (or trash), the most recently active first."""
    page = page_args(first, after, last, before)
    deleted = filter is not None and filter.deleted
    db = info.context.db
    counted = selects_total_count(info)
    result = await db.read(conversations.list_conversations, page, deleted=deleted, counted=counted)

    async def count() -> int:
        return await db.read(conversations.count_conversations, deleted=deleted)

    return to_connection(result, Conversation.from_row, count)


@strawberry.type
class ConversationQueries:
    @strawberry.field(
        description="One conversation by ID, live or in the trash; "
        "null if you have no such conversation."
    )
    async def conversation(
        self,
        info: Info,
        id: Annotated[
            strawberry.ID, strawberry.argument(description="The conversation's global ID.")
        ],
    ) -> Conversation | None:
        loader = info.context.loaders.conversation_by_id
        row = await load_by_global_id(loader, id, "Conversation")
        return None if row is None else Conversation.from_row(row)

    conversations: Connection[Conversation] = strawberry.field(
        resolver=resolve_conversations,
        description="Your live conversations (or, with `filter: {deleted: true}`, your trashed "
        "ones), the most recently active first.",
    )
