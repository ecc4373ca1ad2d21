"""Write operations of the tasks domain: each runs in one transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Annotated

import strawberry

from graphql_api import models
from graphql_api.context import Info
from graphql_api.errors import NotFound
from graphql_api.mirror import given_fields, mirror
from graphql_api.relay import GuardedUpdate, decode_uuid, decode_uuids
from graphql_api.tasks import repository as tasks
from graphql_api.tasks.types import Task


@mirror(models.TaskFields, kind="input", description="A new task.")
class CreateTaskInput:
    tag_ids: list[strawberry.ID] = strawberry.field(
        default_factory=list, description="Tags to attach (your live tags)."
    )
    parent_id: strawberry.ID | None = strawberry.field(
        default=None, description="Make the new task a subtask of this task."
    )


@mirror(
    models.TaskFields,
    kind="patch",
    description="Changes to a task: absent fields stay as they are; null clears a nullable field.",
)
class UpdateTaskInput(GuardedUpdate):
    pass


def _task_ids(global_ids: Sequence[str]) -> list[uuid.UUID]:
    """The row ids of a list of task IDs; NOT_FOUND naming the first that is not a task's."""
    ids = []
    for global_id in global_ids:
        try:
            ids.append(decode_uuid(global_id, "Task"))
        except NotFound:
            raise tasks.task_not_found(global_id) from None
    return ids


TaskId = Annotated[strawberry.ID, strawberry.argument(description="The task's global ID.")]
ParentId = Annotated[strawberry.ID, strawberry.argument(description="The parent task's global ID.")]
ChildId = Annotated[strawberry.ID, strawberry.argument(description="The subtask's global ID.")]
TagId = Annotated[strawberry.ID, strawberry.argument(description="The tag's global ID.")]


@strawberry.type
class TaskMutations:
    @strawberry.mutation(description="Create a task, with its tags and parent in the same step.")
    async def create_task(
        self,
        info: Info,
        input: Annotated[CreateTaskInput, strawberry.argument(description="The task.")],
    ) -> Task | None:
        row = await info.context.create(
            info,
            tasks.create_task,
            tasks.get_tasks,
            given_fields(input),
            tag_ids=decode_uuids(input.tag_ids, "Tag"),
            parent_id=None if input.parent_id is None else decode_uuid(input.parent_id, "Task"),
        )
        return Task.from_row(row)

    @strawberry.mutation(description="Change some fields of a live task.")
    async def update_task(
        self,
        info: Info,
        id: TaskId,
        input: Annotated[UpdateTaskInput, strawberry.argument(description="The changes.")],
    ) -> Task | None:
        row = await info.context.write(
            tasks.update_task,
            decode_uuid(id, "Task"),
            given_fields(input),
            input.expected_updated_at,
        )
        return Task.from_row(row)

    @strawberry.mutation(
        description="Move a task to the trash: it leaves every list "
        "but `tasks(filter: {deleted: true})`."
    )
    async def delete_task(self, info: Info, id: TaskId) -> Task | None:
        return Task.from_row(await info.context.write(tasks.delete_task, decode_uuid(id, "Task")))

    @strawberry.mutation(description="Bring a task back from the trash.")
    async def restore_task(self, info: Info, id: TaskId) -> Task | None:
        return Task.from_row(await info.context.write(tasks.restore_task, decode_uuid(id, "Task")))

    @strawberry.mutation(
        description="Mark several live tasks completed (or open): all of them, or none if "
        "any is not found (NOT_FOUND) or in the trash (CONFLICT); the error names that ID."
    )
    async def complete_tasks(
        self,
        info: Info,
        ids: Annotated[
            list[strawberry.ID], strawberry.argument(description="The tasks' global IDs.")
        ],
        completed: Annotated[
            bool, strawberry.argument(description="true: complete them; false: reopen them.")
        ] = True,
    ) -> list[Task] | None:
        rows = await info.context.write(tasks.complete_tasks, _task_ids(ids), completed, ids)
        return [Task.from_row(row) for row in rows]

    @strawberry.mutation(
        description="Move several tasks to the trash (those in it already stay as they are): "
        "all of them, or none if any is not found (NOT_FOUND, naming that ID). "
        "The answer lists them in the order given."
    )
    async def delete_tasks(
        self,
        info: Info,
        ids: Annotated[
            list[strawberry.ID], strawberry.argument(description="The tasks' global IDs.")
        ],
    ) -> list[Task | None] | None:
        rows = await info.context.write(tasks.delete_tasks, _task_ids(ids), ids)
        return [Task.from_row(row) for row in rows]

    @strawberry.mutation(description="Make the task's tags exactly these.")
    async def set_task_tags(
        self,
        info: Info,
        task_id: TaskId,
        tag_ids: Annotated[
            list[strawberry.ID], strawberry.argument(description="The tags' global IDs.")
        ],
    ) -> Task | None:
        row = await info.context.write(
            tasks.set_task_tags, decode_uuid(task_id, "Task"), decode_uuids(tag_ids, "Tag")
        )
        return Task.from_row(row)

    @strawberry.mutation(description="Attach a tag to a task (no change if attached already).")
    async def add_tag_to_task(self, info: Info, task_id: TaskId, tag_id: TagId) -> Task | None:
        row = await info.context.write(
            tasks.add_tag_to_task, decode_uuid(task_id, "Task"), decode_uuid(tag_id, "Tag")
        )
        return Task.from_row(row)

    @strawberry.mutation(description="Detach a tag from a task (no change if not attached).")
    async def remove_tag_from_task(self, info: Info, task_id: TaskId, tag_id: TagId) -> Task | None:
        row = await info.context.write(
            tasks.remove_tag_from_task, decode_uuid(task_id, "Task"), decode_uuid(tag_id, "Tag")
        )
        return Task.from_row(row)

    @strawberry.mutation(
        description="Make a task a subtask of another; CONFLICT if that would make "
        "a cycle. Returns the parent."
    )
    async def add_subtask(self, info: Info, parent_id: ParentId, child_id: ChildId) -> Task | None:
        row = await info.context.write(
            tasks.add_subtask, decode_uuid(parent_id, "Task"), decode_uuid(child_id, "Task")
        )
        return Task.from_row(row)

    @strawberry.mutation(description="Unlink a subtask from its parent. Returns the parent.")
    async def remove_subtask(
        self, info: Info, parent_id: ParentId, child_id: ChildId
    ) -> Task | None:
        row = await info.context.write(
            tasks.remove_subtask, decode_uuid(parent_id, "Task"), decode_uuid(child_id, "Task")
        )
        return Task.from_row(row)
