"""GraphQL types of the tags domain."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Annotated

import strawberry

from graphql_api import models
from graphql_api.context import Info
from graphql_api.mirror import from_record, mirror
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
from graphql_api.sql import AnyRow, as_record
from graphql_api.tasks import types as task_types

if TYPE_CHECKING:
    from graphql_api.tasks.types import Task


@mirror(
    models.Tag,
    exclude={
        "user_id": "implied: a client only ever sees its own rows",
        "id": "exposed as the opaque global `id` of Node",
    },
)
class Tag(Node):
    row_id: strawberry.Private[uuid.UUID]

    @classmethod
    def from_row(cls, raw: AnyRow) -> Tag:
        row = as_record(raw)  # a write answers a RowMapping
        return from_record(cls, row)

    @strawberry.field(description="The live tasks carrying this tag, newest first.")
    async def tasks(
        self,
        info: Info,
        first: First = None,
        after: After = None,
        last: Last = None,
        before: Before = None,
    ) -> Connection[Annotated[Task, strawberry.lazy("graphql_api.tasks.types")]]:
        page = page_args(first, after, last, before)
        loaders = info.context.loaders
        result = await loaders.tasks_page_by_tag_id(page).load(self.row_id)

        async def count() -> int:
            return await loaders.task_count_by_tag_id.load(self.row_id)

        return to_connection(result, task_types.Task.from_row, count)
