"""Tasks and subtask links: every function takes the connection and the owner's `user_id`."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.sql import ColumnElement

from graphql_api.changes.record import Kind, note
from graphql_api.db import contains, like_pattern
from graphql_api.errors import BadUserInput, Conflict, NotFound
from graphql_api.models import (
    PRIORITY_RANK,
    TAGS,
    TASK_RELATIONSHIPS,
    TASK_TAGS,
    TASKS,
    USERS,
    Priority,
    TaskFields,
    utcnow,
)
from graphql_api.pagination import Ordering, Page, PageArgs, Query, SortKey, fetch_page
from graphql_api.sql import (
    Record,
    Statement,
    Statements,
    owned_by_ids,
    position,
    rows_by_key,
    rows_grouped,
)
from graphql_api.validation import changes_of, check_unchanged, validate


class TaskOrderField(enum.Enum):
    """The columns a task list can be sorted by."""

    CREATED_AT = "created_at"
    UPDATED_AT = "updated_at"
    DUE_DATE = "due_date"
    PRIORITY = "priority"
    TITLE = "title"


@dataclass(frozen=True)
class TaskOrder:
    field: TaskOrderField
    descending: bool = False


DEFAULT_TASK_ORDER = (TaskOrder(TaskOrderField.CREATED_AT, descending=True),)


@dataclass(frozen=True)
class TaskFilter:
    """Conditions a listed task must meet; `None` means "any"."""

    completed: bool | None = None
    priority: Priority | None = None
    tag_ids: tuple[uuid.UUID, ...] | None = None
    due_before: datetime | None = None
    due_after: datetime | None = None
    search: str | None = None
    deleted: bool = False


def _iso(value: datetime) -> str:
    return value.isoformat()


_PRIORITY_RANK_SQL = sa.case(
    *((TASKS.c.priority == priority, rank) for priority, rank in PRIORITY_RANK.items())
)


def _sort_key(field: TaskOrderField, descending: bool) -> SortKey:
    if field is TaskOrderField.PRIORITY:
        return SortKey(_PRIORITY_RANK_SQL, descending)
    if field is TaskOrderField.TITLE:
        return SortKey(sa.func.lower(TASKS.c.title), descending)
    column = TASKS.c[field.value]
    return SortKey(
        column,
        descending,
        nullable=column.nullable or False,
        dump=_iso,
        load=datetime.fromisoformat,
    )


def task_ordering(orders: Sequence[TaskOrder] = DEFAULT_TASK_ORDER) -> Ordering:
    """The ordering of a task list, with the id as the final tiebreaker."""
    orders = tuple(orders) or DEFAULT_TASK_ORDER
    fields = [order.field for order in orders]
    if len(set(fields)) != len(fields):
        raise BadUserInput("Each field may appear once in `orderBy`.", field="orderBy")
    keys = [_sort_key(order.field, order.descending) for order in orders]
    tiebreak = SortKey(TASKS.c.id, orders[-1].descending, dump=str, load=uuid.UUID)
    name = "tasks:" + ",".join(f"{o.field.value}.{'d' if o.descending else 'a'}" for o in orders)
    return Ordering(name, (*keys, tiebreak))


ID = position(TASKS, "id")

CHILD_ORDERING = task_ordering((TaskOrder(TaskOrderField.CREATED_AT),))


class _Shape(NamedTuple):
    """Which conditions a `TaskFilter` sets, without their values: what its SQL depends on."""

    completed: bool
    priority: bool
    tag_ids: bool | None  # None: no tag condition; False: an empty list, which matches nothing
    due_before: bool
    due_after: bool
    search: bool
    deleted: bool


def _shape(task_filter: TaskFilter) -> _Shape:
    tag_ids = task_filter.tag_ids
    return _Shape(
        completed=task_filter.completed is not None,
        priority=task_filter.priority is not None,
        tag_ids=None if tag_ids is None else bool(tag_ids),
        due_before=task_filter.due_before is not None,
        due_after=task_filter.due_after is not None,
        search=bool(task_filter.search),
        deleted=task_filter.deleted,
    )


def _filter_params(user_id: str, task_filter: TaskFilter) -> dict[str, Any]:
    """The values of the conditions `_filter_conditions` writes as parameters."""
    params: dict[str, Any] = {"user_id": user_id}
    for name in ("completed", "priority", "due_before", "due_after"):
        value = getattr(task_filter, name)
        if value is not None:
            params[name] = value
    if task_filter.search:
        params["search"] = like_pattern(task_filter.search)
    if task_filter.tag_ids:
        params["tag_ids"] = list(task_filter.tag_ids)
    return params


def _filter_conditions(shape: _Shape) -> list[ColumnElement[bool]]:
    """The conditions of a filter of this shape, its values as named parameters."""
    conditions: list[ColumnElement[bool]] = [TASKS.c.user_id == sa.bindparam("user_id")]
    if shape.deleted:
        conditions.append(TASKS.c.deleted_at.is_not(None))
    else:
        conditions.append(TASKS.c.deleted_at.is_(None))
    if shape.completed:
        conditions.append(TASKS.c.completed == sa.bindparam("completed"))
    if shape.priority:
        conditions.append(TASKS.c.priority == sa.bindparam("priority"))
    if shape.due_before:
        conditions.append(TASKS.c.due_date < sa.bindparam("due_before"))
    if shape.due_after:
        conditions.append(TASKS.c.due_date > sa.bindparam("due_after"))
    if shape.search:
        conditions.append(
            sa.or_(contains(TASKS.c.title, "search"), contains(TASKS.c.description, "search"))
        )
    if shape.tag_ids is not None:
        tagged = sa.select(TASK_TAGS.c.task_id).where(
            TASK_TAGS.c.user_id == sa.bindparam("user_id"),
            TASK_TAGS.c.task_id == TASKS.c.id,
            TASK_TAGS.c.tag_id.in_(sa.bindparam("tag_ids", expanding=True))
            if shape.tag_ids
            else sa.false(),
        )
        conditions.append(tagged.exists())
    return conditions


# --- reads -----------------------------------------------------------------------------------


_BY_IDS = owned_by_ids(TASKS)


def get_tasks(conn: Connection, user_id: str, ids: Iterable[uuid.UUID]) -> dict[Any, Record]:
    """The user's tasks with these ids, live or trashed, by id. Ids of others are absent."""
    return rows_by_key(_BY_IDS, conn, user_id, ids, ID)


def task_query(user_id: str, task_filter: TaskFilter) -> Query:
    """The user's tasks that pass `task_filter`, to be paged."""
    shape = _shape(task_filter)
    return Query(
        ("tasks", shape),
        lambda: sa.select(TASKS).where(*_filter_conditions(shape)),
        _filter_params(user_id, task_filter),
    )


def list_tasks(
    conn: Connection,
    user_id: str,
    task_filter: TaskFilter,
    ordering: Ordering,
    page: PageArgs,
    *,
    counted: bool = False,
) -> Page:
    """The tasks that pass `task_filter`, a page of them; `counted`: with their number."""
    return fetch_page(conn, task_query(user_id, task_filter), ordering, page, counted=counted)


_COUNTS = Statements()


def count_tasks(conn: Connection, user_id: str, task_filter: TaskFilter) -> int:
    shape = _shape(task_filter)
    statement = _COUNTS.get(
        shape,
        lambda: sa.select(sa.func.count()).select_from(TASKS).where(*_filter_conditions(shape)),
    )
    count: int = statement.run(conn, **_filter_params(user_id, task_filter))[0][0]
    return count


def _linked_tasks(*, by: sa.Column[Any], target: sa.Column[Any]) -> Statement:
    """Live tasks linked to each of `ids` (the link's `by` end), with that id as last column."""
    return Statement(
        lambda: (
            sa.select(TASKS, by.label("_link"))
            .join(
                TASK_RELATIONSHIPS,
                sa.and_(TASK_RELATIONSHIPS.c.user_id == TASKS.c.user_id, target == TASKS.c.id),
            )
            .where(
                TASK_RELATIONSHIPS.c.user_id == sa.bindparam("user_id"),
                by.in_(sa.bindparam("ids", expanding=True)),
                TASKS.c.deleted_at.is_(None),
            )
            .order_by(*(key.order_by() for key in CHILD_ORDERING.keys))
        )
    )


_SUBTASKS = _linked_tasks(
    by=TASK_RELATIONSHIPS.c.parent_task_id, target=TASK_RELATIONSHIPS.c.child_task_id
)
_PARENTS = _linked_tasks(
    by=TASK_RELATIONSHIPS.c.child_task_id, target=TASK_RELATIONSHIPS.c.parent_task_id
)


def subtasks_of(
    conn: Connection, user_id: str, parent_ids: Iterable[uuid.UUID]
) -> dict[Any, list[Record]]:
    """Live subtasks of each parent, oldest first."""
    return rows_grouped(_SUBTASKS, conn, user_id, parent_ids)


def parents_of(
    conn: Connection, user_id: str, child_ids: Iterable[uuid.UUID]
) -> dict[Any, list[Record]]:
    """Live parents of each task, oldest first."""
    return rows_grouped(_PARENTS, conn, user_id, child_ids)


@dataclass(frozen=True)
class TaskCounts:
    total: int
    completed: int
    overdue: int
    by_priority: dict[Priority, int]


def task_counts(conn: Connection, user_id: str, now: datetime) -> TaskCounts:
    """Counts over the user's live tasks, in one grouped statement."""
    overdue = sa.and_(
        TASKS.c.completed.is_(False), TASKS.c.due_date.is_not(None), TASKS.c.due_date < now
    )
    overdue_flag = sa.case((overdue, 1), else_=0)
    query = (
        sa.select(TASKS.c.priority, TASKS.c.completed, overdue_flag, sa.func.count())
        .where(TASKS.c.user_id == user_id, TASKS.c.deleted_at.is_(None))
        .group_by(TASKS.c.priority, TASKS.c.completed, overdue_flag)
    )
    by_priority = dict.fromkeys(Priority, 0)
    total = completed = overdue_count = 0
    for priority, is_completed, is_overdue, count in conn.execute(query):
        total += count
        by_priority[priority] += count
        completed += count if is_completed else 0
        overdue_count += count if is_overdue else 0
    return TaskCounts(total, completed, overdue_count, by_priority)


# --- writes ----------------------------------------------------------------------------------


def lock_live_task(conn: Connection, user_id: str, task_id: uuid.UUID) -> RowMapping:
    """The live task, locked for this transaction; NOT_FOUND if missing, CONFLICT if trashed."""
    row = lock_task(conn, user_id, task_id)
    if row["deleted_at"] is not None:
        raise Conflict("The task is in the trash: restore it first.")
    return row


def lock_task(conn: Connection, user_id: str, task_id: uuid.UUID) -> RowMapping:
    query = sa.select(TASKS).where(TASKS.c.user_id == user_id, TASKS.c.id == task_id)
    row = conn.execute(query.with_for_update()).mappings().first()
    if row is None:
        raise NotFound("Task")
    return row


def _completion(completed: bool, was_completed: bool, now: datetime) -> dict[str, Any]:
    if completed == was_completed:
        return {}
    return {"completed": completed, "completed_at": now if completed else None}


def create_task(
    conn: Connection,
    user_id: str,
    fields: dict[str, Any],
    *,
    tag_ids: Sequence[uuid.UUID] = (),
    parent_id: uuid.UUID | None = None,
) -> RowMapping:
    """Insert a task, with its tags and its parent set in the same transaction."""
    values = validate(TaskFields, fields).model_dump()
    now = utcnow()
    if parent_id is not None:
        lock_live_task(conn, user_id, parent_id)
    task_id = uuid.uuid4()
    row = (
        conn.execute(
            sa.insert(TASKS)
            .values(
                **values,
                user_id=user_id,
                id=task_id,
                completed_at=now if values["completed"] else None,
                created_at=now,
                updated_at=now,
            )
            .returning(TASKS)
        )
        .mappings()
        .one()
    )
    note(conn, user_id, "CREATED", "Task", task_id)
    attach_tags(conn, user_id, task_id, tag_ids)
    if parent_id is not None:
        conn.execute(
            sa.insert(TASK_RELATIONSHIPS).values(
                user_id=user_id, parent_task_id=parent_id, child_task_id=task_id
            )
        )
        note(conn, user_id, "UPDATED", "Task", parent_id)  # its subtasks
    return row


def _update(
    conn: Connection,
    user_id: str,
    task_id: uuid.UUID,
    values: dict[str, Any],
    kind: Kind = "UPDATED",
) -> RowMapping:
    note(conn, user_id, kind, "Task", task_id)
    return (
        conn.execute(
            sa.update(TASKS)
            .where(TASKS.c.user_id == user_id, TASKS.c.id == task_id)
            .values(**values, updated_at=utcnow())
            .returning(TASKS)
        )
        .mappings()
        .one()
    )


def update_task(
    conn: Connection,
    user_id: str,
    task_id: uuid.UUID,
    changes: dict[str, Any],
    expected_updated_at: datetime | None = None,
) -> RowMapping:
    """Apply a partial update: absent fields stay, `None` clears a nullable field."""
    current = lock_live_task(conn, user_id, task_id)
    check_unchanged(current, expected_updated_at)
    values = changes_of(TaskFields, dict(current), changes)
    if "completed" in values:
        completed = values.pop("completed")
        values.update(_completion(completed, current["completed"], utcnow()))
    if not values:
        return current
    return _update(conn, user_id, task_id, values)


def delete_task(conn: Connection, user_id: str, task_id: uuid.UUID) -> RowMapping:
    """Move the task to the trash (idempotent)."""
    current = lock_task(conn, user_id, task_id)
    if current["deleted_at"] is not None:
        return current
    return _update(conn, user_id, task_id, {"deleted_at": utcnow()}, "DELETED")


def restore_task(conn: Connection, user_id: str, task_id: uuid.UUID) -> RowMapping:
    """Bring the task back from the trash (idempotent)."""
    current = lock_task(conn, user_id, task_id)
    if current["deleted_at"] is None:
        return current
    return _update(conn, user_id, task_id, {"deleted_at": None}, "RESTORED")


def task_not_found(label: str) -> NotFound:
    """NOT_FOUND for one task of a list, named as the caller named it (its global ID): the
    same whether it is missing or another user's."""
    error = NotFound(f"Task {label}")
    error.extensions["id"] = label
    return error


def _lock_tasks(
    conn: Connection,
    user_id: str,
    task_ids: Sequence[uuid.UUID],
    labels: Sequence[str] | None,
    *,
    live: bool,
) -> dict[Any, RowMapping]:
    """The tasks, locked for this transaction, by id. The first one, in the caller's order,
    that is missing (or another user's) is NOT_FOUND; with `live`, one in the trash is a
    CONFLICT. `labels` name the tasks in errors (default: their ids)."""
    wanted = list(dict.fromkeys(task_ids))
    query = sa.select(TASKS).where(TASKS.c.user_id == user_id, TASKS.c.id.in_(wanted))
    found = {row["id"]: row for row in conn.execute(query.with_for_update()).mappings()}
    names = [str(task_id) for task_id in task_ids] if labels is None else labels
    for task_id, name in zip(task_ids, names, strict=True):
        row = found.get(task_id)
        if row is None:
            raise task_not_found(name)
        if live and row["deleted_at"] is not None:
            raise Conflict(f"Task {name} is in the trash: restore it first.", id=name)
    return found


def complete_tasks(
    conn: Connection,
    user_id: str,
    task_ids: Sequence[uuid.UUID],
    completed: bool,
    labels: Sequence[str] | None = None,
) -> list[RowMapping]:
    """Mark all the tasks (un)completed, or none of them if any is missing or trashed (the
    error names the first such, by its label in `labels` if given)."""
    found = _lock_tasks(conn, user_id, task_ids, labels, live=True)
    now = utcnow()
    changed = [task_id for task_id, row in found.items() if row["completed"] != completed]
    if changed:
        note(conn, user_id, "UPDATED", "Task", changed)
        updated = conn.execute(
            sa.update(TASKS)
            .where(TASKS.c.user_id == user_id, TASKS.c.id.in_(changed))
            .values(**_completion(completed, not completed, now), updated_at=now)
            .returning(TASKS)
        ).mappings()
        found.update({row["id"]: row for row in updated})
    return [found[task_id] for task_id in task_ids]


def delete_tasks(
    conn: Connection,
    user_id: str,
    task_ids: Sequence[uuid.UUID],
    labels: Sequence[str] | None = None,
) -> list[RowMapping]:
    """Move all the tasks to the trash (those in it already stay as they are), or none of them
    if any is missing (the error names the first such, by its label in `labels` if given)."""
    found = _lock_tasks(conn, user_id, task_ids, labels, live=False)
    live = [task_id for task_id, row in found.items() if row["deleted_at"] is None]
    if live:
        note(conn, user_id, "DELETED", "Task", live)
        now = utcnow()
        trashed = conn.execute(
            sa.update(TASKS)
            .where(TASKS.c.user_id == user_id, TASKS.c.id.in_(live))
            .values(deleted_at=now, updated_at=now)
            .returning(TASKS)
        ).mappings()
        found.update({row["id"]: row for row in trashed})
    return [found[task_id] for task_id in task_ids]


def _lock_task_graph(conn: Connection, user_id: str) -> None:
    """Serialise changes to one user's subtask graph, so two links cannot close a cycle."""
    conn.execute(sa.select(USERS.c.id).where(USERS.c.id == user_id).with_for_update())


def _is_descendant(conn: Connection, user_id: str, task_id: uuid.UUID, of: uuid.UUID) -> bool:
    links = TASK_RELATIONSHIPS
    descendants = (
        sa.select(links.c.child_task_id.label("id"))
        .where(links.c.user_id == user_id, links.c.parent_task_id == of)
        .cte("descendants", recursive=True)
    )
    descendants = descendants.union(
        sa.select(links.c.child_task_id).where(
            links.c.user_id == user_id, links.c.parent_task_id == descendants.c.id
        )
    )
    query = sa.select(sa.literal(1)).select_from(descendants).where(descendants.c.id == task_id)
    return conn.execute(query.limit(1)).first() is not None


def add_subtask(
    conn: Connection, user_id: str, parent_id: uuid.UUID, child_id: uuid.UUID
) -> RowMapping:
    """Make `child_id` a subtask of `parent_id`; CONFLICT if that would close a cycle."""
    parent = lock_live_task(conn, user_id, parent_id)
    lock_live_task(conn, user_id, child_id)
    if parent_id == child_id:
        raise Conflict("A task cannot be its own subtask.")
    _lock_task_graph(conn, user_id)
    if _is_descendant(conn, user_id, parent_id, of=child_id):
        raise Conflict("That link would make a cycle: the parent is already below the child.")
    exists = sa.select(TASK_RELATIONSHIPS).where(
        TASK_RELATIONSHIPS.c.user_id == user_id,
        TASK_RELATIONSHIPS.c.parent_task_id == parent_id,
        TASK_RELATIONSHIPS.c.child_task_id == child_id,
    )
    if conn.execute(exists).first() is None:
        conn.execute(
            sa.insert(TASK_RELATIONSHIPS).values(
                user_id=user_id, parent_task_id=parent_id, child_task_id=child_id
            )
        )
        note(conn, user_id, "UPDATED", "Task", [parent_id, child_id])  # subtasks, parents
    return parent


def remove_subtask(
    conn: Connection, user_id: str, parent_id: uuid.UUID, child_id: uuid.UUID
) -> RowMapping:
    """Unlink a subtask from its parent (idempotent)."""
    parent = lock_live_task(conn, user_id, parent_id)
    lock_task(conn, user_id, child_id)
    unlinked = conn.execute(
        sa.delete(TASK_RELATIONSHIPS).where(
            TASK_RELATIONSHIPS.c.user_id == user_id,
            TASK_RELATIONSHIPS.c.parent_task_id == parent_id,
            TASK_RELATIONSHIPS.c.child_task_id == child_id,
        )
    ).rowcount
    if unlinked:
        note(conn, user_id, "UPDATED", "Task", [parent_id, child_id])  # subtasks, parents
    return parent


# --- tags on tasks ---------------------------------------------------------------------------


def _require_live_tags(conn: Connection, user_id: str, tag_ids: Iterable[uuid.UUID]) -> set[Any]:
    wanted = set(tag_ids)
    if not wanted:
        return wanted
    query = sa.select(TAGS.c.id, TAGS.c.deleted_at).where(
        TAGS.c.user_id == user_id, TAGS.c.id.in_(wanted)
    )
    deleted_at = {row[0]: row[1] for row in conn.execute(query)}
    if set(deleted_at) != wanted:
        raise NotFound("Tag")
    if any(when is not None for when in deleted_at.values()):
        raise Conflict("The tag is in the trash: restore it first.")
    return wanted


def _tag_ids_of(conn: Connection, user_id: str, task_id: uuid.UUID) -> set[Any]:
    query = sa.select(TASK_TAGS.c.tag_id).where(
        TASK_TAGS.c.user_id == user_id, TASK_TAGS.c.task_id == task_id
    )
    return set(conn.execute(query).scalars())


def attach_tags(
    conn: Connection, user_id: str, task_id: uuid.UUID, tag_ids: Iterable[uuid.UUID]
) -> None:
    """Link live tags to the task; tags already linked are left as they are."""
    wanted = _require_live_tags(conn, user_id, tag_ids)
    if not wanted:
        return
    new = wanted - _tag_ids_of(conn, user_id, task_id)
    if new:
        conn.execute(
            sa.insert(TASK_TAGS),
            [{"user_id": user_id, "task_id": task_id, "tag_id": tag_id} for tag_id in new],
        )
        note(conn, user_id, "UPDATED", "Task", task_id)  # its tags


def _detach_tags(
    conn: Connection, user_id: str, task_id: uuid.UUID, tag_ids: Iterable[uuid.UUID]
) -> None:
    detached = conn.execute(
        sa.delete(TASK_TAGS).where(
            TASK_TAGS.c.user_id == user_id,
            TASK_TAGS.c.task_id == task_id,
            TASK_TAGS.c.tag_id.in_(list(tag_ids)),
        )
    ).rowcount
    if detached:
        note(conn, user_id, "UPDATED", "Task", task_id)  # its tags


def set_task_tags(
    conn: Connection, user_id: str, task_id: uuid.UUID, tag_ids: Sequence[uuid.UUID]
) -> RowMapping:
    """Make the task's tags exactly `tag_ids`."""
    task = lock_live_task(conn, user_id, task_id)
    wanted = _require_live_tags(conn, user_id, tag_ids)
    stale = _tag_ids_of(conn, user_id, task_id) - wanted
    if stale:
        _detach_tags(conn, user_id, task_id, stale)
    attach_tags(conn, user_id, task_id, wanted)
    return task


def add_tag_to_task(
    conn: Connection, user_id: str, task_id: uuid.UUID, tag_id: uuid.UUID
) -> RowMapping:
    task = lock_live_task(conn, user_id, task_id)
    attach_tags(conn, user_id, task_id, [tag_id])
    return task


def remove_tag_from_task(
    conn: Connection, user_id: str, task_id: uuid.UUID, tag_id: uuid.UUID
) -> RowMapping:
    """Unlink the tag (idempotent); NOT_FOUND if the task or the tag is not the user's."""
    task = lock_live_task(conn, user_id, task_id)
    _require_live_tags(conn, user_id, [tag_id])
    _detach_tags(conn, user_id, task_id, [tag_id])
    return task
