"""Write operations on the trash as a whole: each runs in one transaction."""

from __future__ import annotations

import strawberry

from graphql_api.context import Info
from graphql_api.trash import repository as trash


@strawberry.type
class TrashMutations:
    @strawberry.mutation(
        description="Delete everything in your trash for good, in one step: your trashed "
        "tasks, tags and conversations, with their tag links, subtask links and messages. "
        "Answers how many tasks, tags and conversations went (their links and messages are "
        "not counted). Cannot be undone."
    )
    async def empty_trash(self, info: Info) -> int | None:
        counts = await info.context.write(trash.empty_trash)
        return counts.total
