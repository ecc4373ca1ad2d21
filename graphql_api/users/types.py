"""GraphQL types of the users domain."""

from __future__ import annotations

import strawberry
from sqlalchemy.engine import RowMapping

from graphql_api import models
from graphql_api.conversations.queries import resolve_conversations
from graphql_api.conversations.types import Conversation
from graphql_api.mirror import mirror, node_values
from graphql_api.relay import Connection, Node
from graphql_api.tags.queries import resolve_tags
from graphql_api.tags.types import Tag
from graphql_api.tasks.queries import resolve_tasks
from graphql_api.tasks.types import Task


@mirror(
    models.User,
    exclude={
        "id": "exposed as the opaque global `id` of Node",
        "password_hash": "a secret: never leaves the server",
        "issuer": "how the server keys provider identities, not part of the API",
        "subject": "how the server keys provider identities, not part of the API",
        "tokens_valid_after": "checked with every token; the server's bookkeeping, not shown",
        "change_seq": "the change feed's counter: `changes` answers positions as cursors",
        "changes_kept_after": "the change feed's retention: `changes` answers CURSOR_EXPIRED",
    },
)
class User(Node):
    row_id: strawberry.Private[str]

    @classmethod
    def from_row(cls, row: RowMapping) -> User:
        return cls(**node_values(cls, row))

    tasks: Connection[Task] = strawberry.field(
        resolver=resolve_tasks, description="Your tasks: the same list as the root `tasks`."
    )
    tags: Connection[Tag] = strawberry.field(
        resolver=resolve_tags, description="Your tags: the same list as the root `tags`."
    )
    conversations: Connection[Conversation] = strawberry.field(
        resolver=resolve_conversations,
        description="Your conversations: the same list as the root `conversations`.",
    )


@strawberry.type(description="A token for `Authorization: Bearer <token>` and its user.")
class AuthPayload:
    token: str = strawberry.field(description="A signed JWT; send it with every request.")
    user: User = strawberry.field(description="The signed-in user.")
