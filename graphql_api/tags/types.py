"""GraphQL types of the tags domain."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Annotated

import strawberry

from graphql_api import models
from graphql_api.compiled.batch import batched
from graphql_api.context import Context, Info
from graphql_api.loaders import load_all
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


async def tasks_of_tags(
    tags: Sequence[Tag],
    context: Context,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
) -> list[Connection[Task]]:
    """`Tag.tasks` for a level's tags (`graphql_api.compiled.batch`)."""
    page = page_args(first, after, last, before)
    loaders = context.loaders
    keys = [tag.row_id for tag in tags]
    found = await load_all(loaders.tasks_page_by_tag_id(page), keys)
    return [
        to_connection(result, task_types.Task.from_row, partial(loaders.count_tasks_of_tag, key))
        for result, key in zip(found, keys, strict=True)
    ]


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
    @batched(tasks_of_tags)
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
        count = partial(loaders.count_tasks_of_tag, self.row_id)
        return to_connection(result, task_types.Task.from_row, count)
