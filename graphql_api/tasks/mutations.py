"""Write operations of the tasks domain: each runs in one transaction."""

from __future__ import annotations

from typing import Annotated

import strawberry

from graphql_api import models
from graphql_api.context import Info
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
    ) -> Task:
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
    ) -> Task:
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
    async def delete_task(self, info: Info, id: TaskId) -> Task:
        return Task.from_row(await info.context.write(tasks.delete_task, decode_uuid(id, "Task")))

    @strawberry.mutation(description="Bring a task back from the trash.")
    async def restore_task(self, info: Info, id: TaskId) -> Task:
        return Task.from_row(await info.context.write(tasks.restore_task, decode_uuid(id, "Task")))

    @strawberry.mutation(
        description="Mark several live tasks completed (or open): "
        "all of them, or none if any is not found."
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
    ) -> list[Task]:
        rows = await info.context.write(tasks.complete_tasks, decode_uuids(ids, "Task"), completed)
        return [Task.from_row(row) for row in rows]

    @strawberry.mutation(description="Make the task's tags exactly these.")
    async def set_task_tags(
        self,
        info: Info,
        task_id: TaskId,
        tag_ids: Annotated[
            list[strawberry.ID], strawberry.argument(description="The tags' global IDs.")
        ],
    ) -> Task:
        row = await info.context.write(
            tasks.set_task_tags, decode_uuid(task_id, "Task"), decode_uuids(tag_ids, "Tag")
        )
        return Task.from_row(row)

    @strawberry.mutation(description="Attach a tag to a task (no change if attached already).")
    async def add_tag_to_task(self, info: Info, task_id: TaskId, tag_id: TagId) -> Task:
        row = await info.context.write(
            tasks.add_tag_to_task, decode_uuid(task_id, "Task"), decode_uuid(tag_id, "Tag")
        )
        return Task.from_row(row)

    @strawberry.mutation(description="Detach a tag from a task (no change if not attached).")
    async def remove_tag_from_task(self, info: Info, task_id: TaskId, tag_id: TagId) -> Task:
        row = await info.context.write(
            tasks.remove_tag_from_task, decode_uuid(task_id, "Task"), decode_uuid(tag_id, "Tag")
        )
        return Task.from_row(row)

    @strawberry.mutation(
        description="Make a task a subtask of another; CONFLICT if that would make "
        "a cycle. Returns the parent."
    )
    async def add_subtask(self, info: Info, parent_id: ParentId, child_id: ChildId) -> Task:
        row = await info.context.write(
            tasks.add_subtask, decode_uuid(parent_id, "Task"), decode_uuid(child_id, "Task")
        )
        return Task.from_row(row)

    @strawberry.mutation(description="Unlink a subtask from its parent. Returns the parent.")
    async def remove_subtask(self, info: Info, parent_id: ParentId, child_id: ChildId) -> Task:
        row = await info.context.write(
            tasks.remove_subtask, decode_uuid(parent_id, "Task"), decode_uuid(child_id, "Task")
        )
        return Task.from_row(row)
