"""Write operations of the conversations domain: each runs in one transaction."""

from __future__ import annotations

from typing import Annotated

import strawberry

from graphql_api import models
from graphql_api.context import Info
from graphql_api.conversations import repository as conversations
from graphql_api.conversations.types import Conversation, Message
from graphql_api.mirror import given_fields, mirror
from graphql_api.relay import GuardedUpdate, decode_uuid


@mirror(models.ConversationFields, kind="input", description="A new conversation.")
class CreateConversationInput:
    pass


@mirror(
    models.ConversationFields,
    kind="patch",
    description="Changes to a conversation: absent fields stay.",
)
class UpdateConversationInput(GuardedUpdate):
    pass


@mirror(models.MessageFields, kind="input", description="A new message.")
class PostMessageInput:
    pass


ConversationId = Annotated[
    strawberry.ID, strawberry.argument(description="The conversation's global ID.")
]


@strawberry.type
class ConversationMutations:
    @strawberry.mutation(description="Start a conversation.")
    async def create_conversation(
        self,
        info: Info,
        input: Annotated[
            CreateConversationInput, strawberry.argument(description="The conversation.")
        ],
    ) -> Conversation | None:
        row = await info.context.create(
            info,
            conversations.create_conversation,
            conversations.get_conversations,
            given_fields(input),
        )
        return Conversation.from_row(row)

    @strawberry.mutation(description="Rename a conversation.")
    async def update_conversation(
        self,
        info: Info,
        id: ConversationId,
        input: Annotated[UpdateConversationInput, strawberry.argument(description="The changes.")],
    ) -> Conversation | None:
        row = await info.context.write(
            conversations.update_conversation,
            decode_uuid(id, "Conversation"),
            given_fields(input),
            input.expected_updated_at,
        )
        return Conversation.from_row(row)

    @strawberry.mutation(
        description="Move a conversation, and with it its messages, to the trash: it leaves "
        "every list but `conversations(filter: {deleted: true})`."
    )
    async def delete_conversation(self, info: Info, id: ConversationId) -> Conversation | None:
        row = await info.context.write(
            conversations.delete_conversation, decode_uuid(id, "Conversation")
        )
        return Conversation.from_row(row)

    @strawberry.mutation(description="Bring a conversation and its messages back from the trash.")
    async def restore_conversation(self, info: Info, id: ConversationId) -> Conversation | None:
        row = await info.context.write(
            conversations.restore_conversation, decode_uuid(id, "Conversation")
        )
        return Conversation.from_row(row)

    @strawberry.mutation(description="Append a message to a conversation.")
    async def post_message(
        self,
        info: Info,
        conversation_id: ConversationId,
        input: Annotated[PostMessageInput, strawberry.argument(description="The message.")],
    ) -> Message | None:
        row = await info.context.create(
            info,
            conversations.post_message,
            conversations.get_messages,
            decode_uuid(conversation_id, "Conversation"),
            given_fields(input),
        )
        return Message.from_row(row)
