"""GraphQL types of the tasks domain."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

from graphql_api import models
from graphql_api.compiled.batch import batched
from graphql_api.context import Context, Info
from graphql_api.loaders import load_all
from graphql_api.mirror import describe_enum, from_record, mirror
from graphql_api.relay import Node
from graphql_api.sql import AnyRow, as_record, position
from graphql_api.tags import repository as tags_repository
from graphql_api.tags import types as tag_types
from graphql_api.tasks.repository import TaskCounts, TaskOrderField

if TYPE_CHECKING:
    from graphql_api.tags.types import Tag

describe_enum(
    models.Priority,
    "How urgent a task is, from LOW to HIGH.",
    {
        models.Priority.LOW: "Whenever there is time.",
        models.Priority.MEDIUM: "The default.",
        models.Priority.HIGH: "Do this first.",
    },
)
describe_enum(
    TaskOrderField,
    "A field a task list can be sorted by. Ties are broken by the task's id.",
    {
        TaskOrderField.CREATED_AT: "When the task was created.",
        TaskOrderField.UPDATED_AT: "When the task last changed.",
        TaskOrderField.DUE_DATE: "The due date; tasks without one come last ascending, "
        "first descending.",
        TaskOrderField.PRIORITY: "LOW < MEDIUM < HIGH.",
        TaskOrderField.TITLE: "The title, ignoring case.",
    },
)


DUE_DATE = position(models.TASKS, "due_date")
COMPLETED = position(models.TASKS, "completed")


@strawberry.enum(description="Sort direction.")
class OrderDirection(enum.Enum):
    ASC = strawberry.enum_value("asc", description="Smallest first.")
    DESC = strawberry.enum_value("desc", description="Largest first.")


# The per-level forms of Task's relationship fields (`graphql_api.compiled.batch`): one load of
# every parent's key and the same objects as the resolvers below build, one list per parent.


async def tags_of_tasks(tasks: Sequence[Task], context: Context) -> list[list[Tag]]:
    found = await load_all(context.loaders.tags_by_task_id, [task.row_id for task in tasks])
    return [[tag_types.Tag.from_row(row) for row in rows] for rows in found]


async def subtasks_of_tasks(tasks: Sequence[Task], context: Context) -> list[list[Task]]:
    found = await load_all(context.loaders.subtasks_by_task_id, [task.row_id for task in tasks])
    return [[Task.from_row(row) for row in rows] for rows in found]


async def parents_of_tasks(tasks: Sequence[Task], context: Context) -> list[list[Task]]:
    found = await load_all(context.loaders.parents_by_task_id, [task.row_id for task in tasks])
    return [[Task.from_row(row) for row in rows] for rows in found]


@mirror(
    models.Task,
    exclude={
        "user_id": "implied: a client only ever sees its own rows",
        "id": "exposed as the opaque global `id` of Node",
    },
)
class Task(Node):
    row_id: strawberry.Private[uuid.UUID]
    # Computed when the object is built: a plain field resolves far cheaper than a resolver.
    is_overdue: bool = strawberry.field(
        description="True when the task is open and its due date has passed."
    )

    @classmethod
    def from_row(cls, raw: AnyRow) -> Task:
        row = as_record(raw)  # a write answers a RowMapping
        due_date: datetime | None = row[DUE_DATE]
        overdue = not row[COMPLETED] and due_date is not None and due_date < models.utcnow()
        return from_record(cls, row, is_overdue=overdue)

    @strawberry.field(description="The live tags on this task, by name.")
    @batched(tags_of_tasks)
    async def tags(
        self, info: Info
    ) -> list[Annotated[Tag, strawberry.lazy("graphql_api.tags.types")]]:
        rows = await info.context.loaders.tags_by_task_id.load(self.row_id)
        return [tag_types.Tag.from_row(row) for row in rows]

    @strawberry.field(description="The live subtasks of this task, oldest first.")
    @batched(subtasks_of_tasks)
    async def subtasks(self, info: Info) -> list[Task]:
        rows = await info.context.loaders.subtasks_by_task_id.load(self.row_id)
        return [Task.from_row(row) for row in rows]

    @strawberry.field(description="The live tasks this task is a subtask of, oldest first.")
    @batched(parents_of_tasks)
    async def parents(self, info: Info) -> list[Task]:
        rows = await info.context.loaders.parents_by_task_id.load(self.row_id)
        return [Task.from_row(row) for row in rows]


@strawberry.type(description="How many live tasks have one priority.")
class PriorityCount:
    priority: models.Priority = strawberry.field(description="The priority.")
    count: int = strawberry.field(description="Live tasks with it.")


@strawberry.type(description="How many live tasks carry one tag.")
class TagCount:
    tag: Annotated[Tag, strawberry.lazy("graphql_api.tags.types")] = strawberry.field(
        description="The tag."
    )
    count: int = strawberry.field(description="Live tasks carrying it.")


@strawberry.type(description="Counts over the caller's live tasks (the trash is not counted).")
class TaskStats:
    counts: strawberry.Private[TaskCounts]

    @strawberry.field(description="All live tasks.")
    def total(self) -> int:
        return self.counts.total

    @strawberry.field(description="Live tasks not completed.")
    def open(self) -> int:
        return self.counts.total - self.counts.completed

    @strawberry.field(description="Live tasks completed.")
    def completed(self) -> int:
        return self.counts.completed

    @strawberry.field(description="Open tasks whose due date has passed.")
    def overdue(self) -> int:
        return self.counts.overdue

    @strawberry.field(description="Live tasks per priority, LOW to HIGH, zeros included.")
    def by_priority(self) -> list[PriorityCount]:
        return [
            PriorityCount(priority=priority, count=count)
            for priority, count in self.counts.by_priority.items()
        ]

    @strawberry.field(description="Live tasks per live tag, by tag name, zeros included.")
    async def by_tag(self, info: Info) -> list[TagCount]:
        rows = await info.context.db.read(tags_repository.task_counts_by_tag)
        return [TagCount(tag=tag_types.Tag.from_row(tag), count=count) for tag, count in rows]
