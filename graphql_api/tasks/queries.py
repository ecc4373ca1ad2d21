"""Read operations of the tasks domain."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from graphql_api import models
from graphql_api.context import Info
from graphql_api.errors import BadUserInput
from graphql_api.loaders import load_by_global_id
from graphql_api.relay import (
    After,
    Before,
    Connection,
    First,
    Last,
    decode_uuids,
    page_args,
    selects_total_count,
    to_connection,
)
from graphql_api.tasks import repository as tasks
from graphql_api.tasks.types import OrderDirection, Task, TaskStats

MAX_SEARCH_CHARS = models.DESCRIPTION_MAX
"""No longer text can be contained in a title or description."""


@strawberry.input(description="Conditions on listed tasks: a task is listed if it meets all given.")
class TaskFilter:
    completed: bool | None = strawberry.field(
        default=None, description="Only completed (true) or only open (false) tasks."
    )
    priority: models.Priority | None = strawberry.field(
        default=None, description="Only tasks of this priority."
    )
    tag_ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description="Only tasks carrying at least one of these tags."
    )
    due_before: datetime | None = strawberry.field(
        default=None, description="Only tasks due strictly before this time."
    )
    due_after: datetime | None = strawberry.field(
        default=None, description="Only tasks due strictly after this time."
    )
    search: str | None = strawberry.field(
        default=None,
        description="Only tasks whose title or description contains this text, ignoring case "
        f"(at most {MAX_SEARCH_CHARS} characters).",
    )
    deleted: bool = strawberry.field(
        default=False, description="List the trash (deleted tasks) instead of live tasks."
    )

    def to_filter(self) -> tasks.TaskFilter:
        if self.search is not None and len(self.search) > MAX_SEARCH_CHARS:
            # Longer than any title or description could match, and SQLite refuses LIKE
            # patterns past 50,000 bytes ("LIKE or GLOB pattern too complex").
            raise BadUserInput(
                f"`search`: use at most {MAX_SEARCH_CHARS} characters.", field="search"
            )
        return tasks.TaskFilter(
            completed=self.completed,
            priority=self.priority,
            tag_ids=None if self.tag_ids is None else tuple(decode_uuids(self.tag_ids, "Tag")),
            due_before=self.due_before,
            due_after=self.due_after,
            search=self.search,
            deleted=self.deleted,
        )


@strawberry.input(description="One sort key of a task list.")
class TaskOrder:
    field: tasks.TaskOrderField = strawberry.field(description="What to sort by.")
    direction: OrderDirection = strawberry.field(
        default=OrderDirection.ASC, description="Which way."
    )

    def to_order(self) -> tasks.TaskOrder:
        return tasks.TaskOrder(self.field, descending=self.direction is OrderDirection.DESC)


FilterArg = Annotated[
    TaskFilter | None,
    strawberry.argument(description="Which tasks to list; all live ones if null."),
]
OrderArg = Annotated[
    list[TaskOrder] | None,
    strawberry.argument(
        description="Sort keys, most significant first. Default: newest first (CREATED_AT DESC)."
    ),
]


async def resolve_tasks(
    info: Info,
    filter: FilterArg = None,
    order_by: OrderArg = None,
    first: First = None,
    after: After = None,
    last: Last = None,
    before: Before = None,
) -> Connection[Task]:
    """The caller's tasks, filtered, sorted and paginated by keyset."""
    task_filter = filter.to_filter() if filter else tasks.TaskFilter()
    ordering = tasks.task_ordering([order.to_order() for order in order_by or []])
    page = page_args(first, after, last, before)
    db = info.context.db
    counted = selects_total_count(info)
    result = await db.read(tasks.list_tasks, task_filter, ordering, page, counted=counted)

    async def count() -> int:
        return await db.read(tasks.count_tasks, task_filter)

    return to_connection(result, Task.from_row, count)


IdArg = Annotated[strawberry.ID, strawberry.argument(description="The task's global ID.")]


@strawberry.type
class TaskQueries:
    @strawberry.field(
        description="One task by ID, live or in the trash; null if you have no such task."
    )
    async def task(self, info: Info, id: IdArg) -> Task | None:
        row = await load_by_global_id(info.context.loaders.task_by_id, id, "Task")
        return None if row is None else Task.from_row(row)

    tasks: Connection[Task] = strawberry.field(
        resolver=resolve_tasks,
        description="Your tasks, filtered, sorted and paginated (keyset: cursors survive inserts).",
    )

    @strawberry.field(description="Counts over your live tasks.")
    async def task_stats(self, info: Info) -> TaskStats:
        counts = await info.context.db.read(tasks.task_counts, models.utcnow())
        return TaskStats(counts=counts)
