"""GraphQL types of the conversations domain."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from functools import partial

import strawberry

from graphql_api import models
from graphql_api.compiled.batch import batched
from graphql_api.context import Context, Info
from graphql_api.errors import NotFound
from graphql_api.loaders import load_all, load_existing
from graphql_api.mirror import describe_enum, from_record, mirror
from graphql_api.relay import (
    After,
    Before,
    Connection,
    First,
    Last,
    Node,
    page_args,
    to_connection,
)
from graphql_api.sql import AnyRow, as_record, position

CONVERSATION_ID = position(models.MESSAGES, "conversation_id")

describe_enum(
    models.MessageRole,
    "Who wrote a message.",
    {
        models.MessageRole.USER: "The person using the app.",
        models.MessageRole.ASSISTANT: "The assistant answering them.",
        models.MessageRole.SYSTEM: "Instructions that frame the conversation.",
    },
)

OWNED = {
    "user_id": "implied: a client only ever sees its own rows",
    "id": "exposed as the opaque global `id` of Node",
}


async def messages_of_conversations(
    conversations: Sequence[Conversation],
    context: Context,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
) -> list[Connection[Message]]:
    """`Conversation.messages` for a level's conversations (`graphql_api.compiled.batch`)."""
    page = page_args(first, after, last, before)
    loaders = context.loaders
    keys = [conversation.row_id for conversation in conversations]
    found = await load_all(loaders.messages_page_by_conversation_id(page), keys)
    count = loaders.count_messages_of_conversation
    return [
        to_connection(result, Message.from_row, partial(count, key))
        for result, key in zip(found, keys, strict=True)
    ]


async def conversations_of_messages(
    messages: Sequence[Message], context: Context
) -> list[Conversation | NotFound]:
    """`Message.conversation` for a level's messages: NOT_FOUND as a value stands for the error
    the resolver raises for that message (`graphql_api.compiled.batch`)."""
    loader = context.loaders.conversation_by_id
    found = await load_all(loader, [message.conversation_id for message in messages])
    return [
        NotFound("Conversation") if row is None else Conversation.from_row(row) for row in found
    ]


@mirror(models.Conversation, exclude=OWNED)
class Conversation(Node):
    row_id: strawberry.Private[uuid.UUID]

    @classmethod
    def from_row(cls, raw: AnyRow) -> Conversation:
        row = as_record(raw)  # a write answers a RowMapping
        return from_record(cls, row)

    @strawberry.field(
        description="The messages, oldest first. Ask `last: N` for the N most recent."
    )
    @batched(messages_of_conversations)
    async def messages(
        self,
        info: Info,
        first: First = None,
        after: After = None,
        last: Last = None,
        before: Before = None,
    ) -> Connection[Message]:
        page = page_args(first, after, last, before)
        loaders = info.context.loaders
        result = await loaders.messages_page_by_conversation_id(page).load(self.row_id)
        count = partial(loaders.count_messages_of_conversation, self.row_id)
        return to_connection(result, Message.from_row, count)


@mirror(
    models.Message,
    exclude={**OWNED, "conversation_id": "exposed as the `conversation` field"},
)
class Message(Node):
    row_id: strawberry.Private[uuid.UUID]
    conversation_id: strawberry.Private[uuid.UUID]

    @classmethod
    def from_row(cls, raw: AnyRow) -> Message:
        row = as_record(raw)  # a write answers a RowMapping
        return from_record(cls, row, conversation_id=row[CONVERSATION_ID])

    @strawberry.field(description="The conversation this message belongs to.")
    @batched(conversations_of_messages)
    async def conversation(self, info: Info) -> Conversation:
        loader = info.context.loaders.conversation_by_id
        return Conversation.from_row(
            await load_existing(loader, self.conversation_id, "Conversation")
        )
