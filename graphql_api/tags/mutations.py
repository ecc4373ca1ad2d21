"""Write operations of the tags domain: each runs in one transaction."""

from __future__ import annotations

from typing import Annotated

import strawberry

from graphql_api import models
from graphql_api.context import Info
from graphql_api.mirror import given_fields, mirror
from graphql_api.relay import GuardedUpdate, decode_uuid
from graphql_api.tags import repository as tags
from graphql_api.tags.types import Tag


@mirror(models.TagFields, kind="input", description="A new tag.")
class CreateTagInput:
    pass


@mirror(models.TagFields, kind="patch", description="Changes to a tag: absent fields stay.")
class UpdateTagInput(GuardedUpdate):
    pass


TagId = Annotated[strawberry.ID, strawberry.argument(description="The tag's global ID.")]


@strawberry.type
class TagMutations:
    @strawberry.mutation(description="Create a tag; CONFLICT if you have a tag of that name.")
    async def create_tag(
        self,
        info: Info,
        input: Annotated[CreateTagInput, strawberry.argument(description="The tag.")],
    ) -> Tag | None:
        row = await info.context.create(info, tags.create_tag, tags.get_tags, given_fields(input))
        return Tag.from_row(row)

    @strawberry.mutation(description="Rename or recolour a tag; CONFLICT if the name is taken.")
    async def update_tag(
        self,
        info: Info,
        id: TagId,
        input: Annotated[UpdateTagInput, strawberry.argument(description="The changes.")],
    ) -> Tag | None:
        row = await info.context.write(
            tags.update_tag, decode_uuid(id, "Tag"), given_fields(input), input.expected_updated_at
        )
        return Tag.from_row(row)

    @strawberry.mutation(
        description="Move a tag to the trash: it disappears from every task and list but "
        "`tags(filter: {deleted: true})`, and frees its name."
    )
    async def delete_tag(self, info: Info, id: TagId) -> Tag | None:
        return Tag.from_row(await info.context.write(tags.delete_tag, decode_uuid(id, "Tag")))

    @strawberry.mutation(
        description="Bring a tag back from the trash, onto the tasks it was on; CONFLICT if a "
        "live tag has taken its name meanwhile."
    )
    async def restore_tag(self, info: Info, id: TagId) -> Tag | None:
        return Tag.from_row(await info.context.write(tags.restore_tag, decode_uuid(id, "Tag")))
