"""Read operations of the change feed."""

from __future__ import annotations

from typing import Annotated

import strawberry

from graphql_api.changes import cursor
from graphql_api.changes import repository as changes
from graphql_api.changes.types import ChangePage
from graphql_api.context import Info
from graphql_api.errors import BadUserInput
from graphql_api.pagination import MAX_PAGE_SIZE

DEFAULT_PAGE = 100

Since = Annotated[
    str | None,
    strawberry.argument(
        description="A `cursor` from an earlier answer (of a `ChangePage` or a `Change`): the "
        "changes after it. Null: from the start of what is kept. CURSOR_EXPIRED when the "
        "changes after it are no longer kept: refetch, then continue from the new cursor."
    ),
]
FirstChanges = Annotated[
    int,
    strawberry.argument(description="Page size: 0 to 100, default 100."),
]


@strawberry.type
class ChangeQueries:
    @strawberry.field(
        description="Your change feed: every committed create, update, trash, restore and "
        "permanent delete of your tasks, tags, conversations and messages, exactly once each, "
        "in commit order, from a position you resume after. Kept for CHANGES_RETENTION_DAYS."
    )
    async def changes(
        self, info: Info, since: Since = None, first: FirstChanges = DEFAULT_PAGE
    ) -> ChangePage:
        if not 0 <= first <= MAX_PAGE_SIZE:
            raise BadUserInput(f"`first` must be between 0 and {MAX_PAGE_SIZE}.", field="first")
        position = None if since is None else cursor.decode(since)
        page = await info.context.db.read(changes.change_page, position, first)
        return ChangePage.from_page(page)
