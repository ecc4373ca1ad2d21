"""Read operations of the tags domain."""

from __future__ import annotations

from typing import Annotated

import strawberry

from graphql_api.context import Info
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
from graphql_api.tags import repository as tags
from graphql_api.tags.types import Tag


async def resolve_tags(
    info: Info,
    first: First = None,
    after: After = None,
    last: Last = None,
    before: Before = None,
    search: Annotated[
        str | None, strawberry.argument(description="Only tags whose name contains this text.")
    ] = None,
) -> Connection[Tag]:
    """The caller's live tags by name, paginated."""
    page = page_args(first, after, last, before)
    db = info.context.db
    result = await db.read(tags.list_tags, search, page)

    async def count() -> int:
        return await db.read(tags.count_tags, search)

    return to_connection(result, Tag.from_row, count)


@strawberry.type
class TagQueries:
    @strawberry.field(description="One live tag by ID; null and NOT_FOUND if it is not yours.")
    async def tag(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="The tag's global ID.")],
    ) -> Tag | None:
        loader = info.context.loaders.tag_by_id
        return Tag.from_row(await load_existing(loader, decode_uuid(id, "Tag"), "Tag"))

    tags: Connection[Tag] = strawberry.field(
        resolver=resolve_tags, description="Your live tags, by name (ignoring case)."
    )
