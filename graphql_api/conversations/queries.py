"""Read operations of the conversations domain."""

from __future__ import annotations

from typing import Annotated

import strawberry

from graphql_api.context import Info
from graphql_api.conversations import repository as conversations
from graphql_api.conversations.types import Conversation
from graphql_api.loaders import load_existing
from graphql_api.relay import (
    After,
    Before,
    Connection,
    First,
    Last,
    decode_uuid,
    page_args,
    to_connection,
)


async def resolve_conversations(
    info: Info, first: First = None, after: After = None, last: Last = None, before: Before = None
) -> Connection[Conversation]:
    """The caller's live conversations, the most recently active first."""
    page = page_args(first, after, last, before)
    db = info.context.db
    result = await db.read(conversations.list_conversations, page)

    async def count() -> int:
        return await db.read(conversations.count_conversations)

    return to_connection(result, Conversation.from_row, count)


@strawberry.type
class ConversationQueries:
    @strawberry.field(
        description="One live conversation by ID; null and NOT_FOUND if it is not yours."
    )
    async def conversation(
        self,
        info: Info,
        id: Annotated[
            strawberry.ID, strawberry.argument(description="The conversation's global ID.")
        ],
    ) -> Conversation | None:
        loader = info.context.loaders.conversation_by_id
        return Conversation.from_row(
            await load_existing(loader, decode_uuid(id, "Conversation"), "Conversation")
        )

    conversations: Connection[Conversation] = strawberry.field(
        resolver=resolve_conversations,
        description="Your live conversations, the most recently active first.",
    )
