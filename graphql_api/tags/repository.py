"""Tags: every function takes the connection and the owner's `user_id`."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.exc import IntegrityError

from graphql_api.changes.record import Kind, note
from graphql_api.db import contains, like_pattern
from graphql_api.errors import Conflict, NotFound
from graphql_api.models import TAGS, TASK_TAGS, TASKS, TagFields, utcnow
from graphql_api.pagination import (
    Ordering,
    Page,
    PageArgs,
    Query,
    SortKey,
    fetch_page,
    fetch_pages,
)
from graphql_api.sql import (
    Record,
    Statement,
    Statements,
    owned_by_ids,
    position,
    rows_by_key,
    rows_grouped,
)
from graphql_api.tasks.repository import task_ordering
from graphql_api.validation import changes_of, check_unchanged, validate

TAG_ORDERING = Ordering(
    "tags:name",
    (
        SortKey(sa.func.lower(TAGS.c.name)),
        SortKey(TAGS.c.id, dump=str, load=uuid.UUID),
    ),
)
TAGGED_TASK_ORDERING = task_ordering()
ID = position(TAGS, "id")


def _live(user_id: str) -> list[sa.ColumnElement[bool]]:
    return [TAGS.c.user_id == user_id, TAGS.c.deleted_at.is_(None)]


def _live_of_user() -> list[sa.ColumnElement[bool]]:
    """`_live`, with the user as the parameter `user_id` (for fixed statements)."""
    return [TAGS.c.user_id == sa.bindparam("user_id"), TAGS.c.deleted_at.is_(None)]


def _listed(deleted: bool) -> list[sa.ColumnElement[bool]]:
    """The tags a list shows: live ones, or with `deleted` the trash (user as parameter)."""
    if not deleted:
        return _live_of_user()
    return [TAGS.c.user_id == sa.bindparam("user_id"), TAGS.c.deleted_at.is_not(None)]


_BY_IDS = owned_by_ids(TAGS)


def get_tags(conn: Connection, user_id: str, ids: Iterable[uuid.UUID]) -> dict[Any, Record]:
    """The user's tags with these ids, live or in the trash (as tasks), by id."""
    return rows_by_key(_BY_IDS, conn, user_id, ids, ID)


def _search(searching: bool, deleted: bool = False) -> list[sa.ColumnElement[bool]]:
    conditions = _listed(deleted)
    if searching:
        conditions.append(contains(TAGS.c.name, "search"))
    return conditions


def _search_params(user_id: str, search: str | None) -> dict[str, Any]:
    return {"user_id": user_id, **({"search": like_pattern(search)} if search else {})}


def list_tags(
    conn: Connection,
    user_id: str,
    search: str | None,
    page: PageArgs,
    *,
    deleted: bool = False,
    counted: bool = False,
) -> Page:
    """Live tags (with `deleted`, the trash) ordered by name (ignoring case); `counted`: with
    their number (`Page.total`)."""
    searching = bool(search)
    query = Query(
        ("tags", searching, deleted),
        lambda: sa.select(TAGS).where(*_search(searching, deleted)),
        _search_params(user_id, search),
    )
    return fetch_page(conn, query, TAG_ORDERING, page, counted=counted)


_COUNTS = Statements()


def count_tags(conn: Connection, user_id: str, search: str | None, *, deleted: bool = False) -> int:
    searching = bool(search)
    statement = _COUNTS.get(
        (searching, deleted),
        lambda: sa.select(sa.func.count()).select_from(TAGS).where(*_search(searching, deleted)),
    )
    count: int = statement.run(conn, **_search_params(user_id, search))[0][0]
    return count


_OF_TASKS = Statement(
    lambda: (
        sa.select(TAGS, TASK_TAGS.c.task_id.label("_task_id"))
        .join(
            TASK_TAGS,
            sa.and_(TASK_TAGS.c.user_id == TAGS.c.user_id, TASK_TAGS.c.tag_id == TAGS.c.id),
        )
        .where(*_live_of_user(), TASK_TAGS.c.task_id.in_(sa.bindparam("ids", expanding=True)))
        .order_by(*(key.order_by() for key in TAG_ORDERING.keys))
    )
)


def tags_of_tasks(
    conn: Connection, user_id: str, task_ids: Iterable[uuid.UUID]
) -> dict[Any, list[Record]]:
    """Live tags of each task, by name."""
    return rows_grouped(_OF_TASKS, conn, user_id, task_ids)


def _tagged_tasks() -> sa.Select[Any]:
    """The user's (parameter `user_id`) live tasks joined to their tags."""
    return (
        sa.select(TASKS)
        .join(
            TASK_TAGS,
            sa.and_(TASK_TAGS.c.user_id == TASKS.c.user_id, TASK_TAGS.c.task_id == TASKS.c.id),
        )
        .where(TASKS.c.user_id == sa.bindparam("user_id"), TASKS.c.deleted_at.is_(None))
    )


def tasks_of_tags(
    conn: Connection, user_id: str, tag_ids: Iterable[uuid.UUID], page: PageArgs
) -> dict[Any, Page]:
    """The same page of live tasks for each tag, newest first: one statement."""
    return fetch_pages(
        conn,
        Query("tagged_tasks", _tagged_tasks, {"user_id": user_id}),
        TAGGED_TASK_ORDERING,
        page,
        parent=TASK_TAGS.c.tag_id,
        parent_ids=tag_ids,
    )


_TASK_COUNTS = Statement(
    lambda: (
        _tagged_tasks()
        .with_only_columns(TASK_TAGS.c.tag_id, sa.func.count())
        .where(TASK_TAGS.c.tag_id.in_(sa.bindparam("ids", expanding=True)))
        .group_by(TASK_TAGS.c.tag_id)
    )
)


def count_tasks_of_tags(
    conn: Connection, user_id: str, tag_ids: Iterable[uuid.UUID]
) -> dict[Any, int]:
    """How many live tasks carry each tag."""
    tag_ids = list(tag_ids)
    if not tag_ids:
        return {}
    counts = dict.fromkeys(tag_ids, 0)
    counts.update((row[0], row[1]) for row in _TASK_COUNTS.run(conn, user_id=user_id, ids=tag_ids))
    return counts


def _name_taken(conn: Connection, user_id: str, name: str, but: uuid.UUID | None) -> bool:
    query = sa.select(TAGS.c.id).where(*_live(user_id), sa.func.lower(TAGS.c.name) == name.lower())
    if but is not None:
        query = query.where(TAGS.c.id != but)
    return conn.execute(query.limit(1)).first() is not None


def _duplicate(name: str) -> Conflict:
    return Conflict(f"A tag named {name!r} exists already.", field="name")


def _write_named(conn: Connection, statement: Any, name: str, kind: Kind) -> RowMapping:
    try:
        row = conn.execute(statement.returning(TAGS)).mappings().one()
    except IntegrityError as exc:  # a concurrent writer took the name after our check
        raise _duplicate(name) from exc
    note(conn, row["user_id"], kind, "Tag", row["id"])
    return row


def create_tag(conn: Connection, user_id: str, fields: dict[str, Any]) -> RowMapping:
    values = validate(TagFields, fields).model_dump()
    if _name_taken(conn, user_id, values["name"], but=None):
        raise _duplicate(values["name"])
    now = utcnow()
    statement = sa.insert(TAGS).values(
        **values, user_id=user_id, id=uuid.uuid4(), created_at=now, updated_at=now
    )
    return _write_named(conn, statement, values["name"], "CREATED")


def _lock_tag(conn: Connection, user_id: str, tag_id: uuid.UUID) -> RowMapping:
    """The tag, live or trashed, locked for this transaction; NOT_FOUND if missing."""
    query = sa.select(TAGS).where(TAGS.c.user_id == user_id, TAGS.c.id == tag_id)
    row = conn.execute(query.with_for_update()).mappings().first()
    if row is None:
        raise NotFound("Tag")
    return row


def _lock_live_tag(conn: Connection, user_id: str, tag_id: uuid.UUID) -> RowMapping:
    """The live tag, locked; NOT_FOUND if missing, CONFLICT if trashed (as for tasks)."""
    row = _lock_tag(conn, user_id, tag_id)
    if row["deleted_at"] is not None:
        raise Conflict("The tag is in the trash: restore it first.")
    return row


def update_tag(
    conn: Connection,
    user_id: str,
    tag_id: uuid.UUID,
    changes: dict[str, Any],
    expected_updated_at: datetime | None = None,
) -> RowMapping:
    current = _lock_live_tag(conn, user_id, tag_id)
    check_unchanged(current, expected_updated_at)
    values = changes_of(TagFields, dict(current), changes)
    if not values:
        return current
    if "name" in values and _name_taken(conn, user_id, values["name"], but=tag_id):
        raise _duplicate(values["name"])
    statement = (
        sa.update(TAGS)
        .where(TAGS.c.user_id == user_id, TAGS.c.id == tag_id)
        .values(**values, updated_at=utcnow())
    )
    return _write_named(conn, statement, values.get("name", current["name"]), "UPDATED")


def delete_tag(conn: Connection, user_id: str, tag_id: uuid.UUID) -> RowMapping:
    """Move the tag to the trash (idempotent): it leaves every list and frees its name."""
    current = _lock_tag(conn, user_id, tag_id)
    if current["deleted_at"] is not None:
        return current
    now = utcnow()
    note(conn, user_id, "DELETED", "Tag", tag_id)
    return (
        conn.execute(
            sa.update(TAGS)
            .where(TAGS.c.user_id == user_id, TAGS.c.id == tag_id)
            .values(deleted_at=now, updated_at=now)
            .returning(TAGS)
        )
        .mappings()
        .one()
    )


def restore_tag(conn: Connection, user_id: str, tag_id: uuid.UUID) -> RowMapping:
    """Bring the tag back from the trash (idempotent), onto the tasks it was on; CONFLICT if
    a live tag has taken its name meanwhile."""
    current = _lock_tag(conn, user_id, tag_id)
    if current["deleted_at"] is None:
        return current
    name = current["name"]
    if _name_taken(conn, user_id, name, but=tag_id):
        raise Conflict(
            f"A live tag named {name!r} exists: rename or delete it, then restore this one.",
            field="name",
        )
    statement = (
        sa.update(TAGS)
        .where(TAGS.c.user_id == user_id, TAGS.c.id == tag_id)
        .values(deleted_at=None, updated_at=utcnow())
    )
    return _write_named(conn, statement, name, "RESTORED")


def task_counts_by_tag(conn: Connection, user_id: str) -> list[tuple[RowMapping, int]]:
    """Each live tag with its number of live tasks, by name."""
    count = (
        sa.select(sa.func.count())
        .select_from(TASK_TAGS)
        .join(
            TASKS,
            sa.and_(TASKS.c.user_id == TASK_TAGS.c.user_id, TASKS.c.id == TASK_TAGS.c.task_id),
        )
        .where(
            TASK_TAGS.c.user_id == user_id,
            TASK_TAGS.c.tag_id == TAGS.c.id,
            TASKS.c.deleted_at.is_(None),
        )
        .scalar_subquery()
    )
    query = (
        sa.select(TAGS, count.label("_count"))
        .where(*_live(user_id))
        .order_by(*(key.order_by() for key in TAG_ORDERING.keys))
    )
    return [(row, row["_count"]) for row in conn.execute(query).mappings()]
