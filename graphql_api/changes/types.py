"""GraphQL types of the change feed."""

from __future__ import annotations

import enum

import strawberry

from graphql_api.changes import cursor
from graphql_api.changes.repository import ChangeRecord, FeedPage
from graphql_api.context import Info
from graphql_api.nodes import load_node
from graphql_api.relay import Node, encode_id


@strawberry.enum(
    description="What happened to an object. Several changes of one object in one mutation "
    "are one change: created then updated is CREATED, restored then updated is RESTORED."
)
class ChangeKind(enum.Enum):
    CREATED = strawberry.enum_value("CREATED", description="The object was created.")
    UPDATED = strawberry.enum_value(
        "UPDATED",
        description="The object changed: its fields, a task's tags, a task's subtasks or "
        "parents (a subtask link updates both tasks), or a conversation's latest activity (a "
        "message posted).",
    )
    DELETED = strawberry.enum_value(
        "DELETED",
        description="The object was moved to the trash (`node` shows it, with `deletedAt`) or "
        "removed for good (`node` is null).",
    )
    RESTORED = strawberry.enum_value(
        "RESTORED", description="The object was brought back from the trash."
    )


@strawberry.type(
    description="One change in your change feed: what happened to which object, and the "
    "object as it is now."
)
class Change:
    cursor: str = strawberry.field(
        description="Opaque position of this change in your feed: pass it as `since` to "
        "resume after it."
    )
    kind: ChangeKind = strawberry.field(description="What happened.")
    id: strawberry.ID = strawberry.field(
        description="Global ID of the changed object, also when it no longer exists."
    )

    @strawberry.field(
        description="The object as it is now (as `node(id:)` answers it); null when it no "
        "longer exists. Several changes of one object show it as it is now, each."
    )
    async def node(self, info: Info) -> Node | None:
        return await load_node(info, self.id)

    @classmethod
    def from_record(cls, record: ChangeRecord) -> Change:
        return cls(
            cursor=cursor.encode(record.seq),
            kind=ChangeKind(record.kind),
            id=encode_id(record.type, record.object_id),
        )


@strawberry.type(description="A page of your change feed, oldest change first.")
class ChangePage:
    changes: list[Change] = strawberry.field(
        description="The changes after `since`, in the order they were committed."
    )
    cursor: str = strawberry.field(
        description="Pass as `since` to continue: after the last change of this page (or "
        "where this page started, when it is empty)."
    )
    has_more: bool = strawberry.field(
        description="More changes follow this page: ask again with `cursor` at once."
    )

    @classmethod
    def from_page(cls, page: FeedPage) -> ChangePage:
        return cls(
            changes=[Change.from_record(record) for record in page.records],
            cursor=cursor.encode(page.end),
            has_more=page.has_more,
        )
