"""Read operations of the tags domain."""

from __future__ import annotations

from typing import Annotated

import strawberry

from graphql_api.context import Info
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
from graphql_api.tags import repository as tags
from graphql_api.tags.types import Tag


@strawberry.input(description="Which tags to list.")
class TagFilter:
    deleted: bool = strawberry.field(
        default=False, description="List the trash (deleted tags) instead of live tags."
    )


FilterArg = Annotated[
    TagFilter | None,
    strawberry.argument(description="Which tags to list; the live ones if null."),
]


async def resolve_tags(
    info: Info,
    first: First = None,
    after: After = None,
    last: Last = None,
    before: Before = None,
    search: Annotated[
        str | None, strawberry.argument(description="Only tags whose name contains this text.")
    ] = None,
    filter: FilterArg = None,
) -> Connection[Tag]:
    """The caller's live tags (or trash) by name, paginated."""
    page = page_args(first, after, last, before)
    deleted = filter is not None and filter.deleted
    db = info.context.db
    counted = selects_total_count(info)
    result = await db.read(tags.list_tags, search, page, deleted=deleted, counted=counted)

    async def count() -> int:
        return await db.read(tags.count_tags, search, deleted=deleted)

    return to_connection(result, Tag.from_row, count)


@strawberry.type
class TagQueries:
    @strawberry.field(
        description="One tag by ID, live or in the trash; null if you have no such tag."
    )
    async def tag(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="The tag's global ID.")],
    ) -> Tag | None:
        row = await load_by_global_id(info.context.loaders.tag_by_id, id, "Tag")
        return None if row is None else Tag.from_row(row)

    tags: Connection[Tag] = strawberry.field(
        resolver=resolve_tags,
        description="Your live tags (or, with `filter: {deleted: true}`, your trashed ones), "
        "by name (ignoring case).",
    )
