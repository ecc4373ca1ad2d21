"""Tags: every function takes the connection and the owner's `user_id`."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.exc import IntegrityError

from graphql_api.db import contains_text
from graphql_api.errors import Conflict, NotFound
from graphql_api.models import TAGS, TASK_TAGS, TASKS, TagFields, utcnow
from graphql_api.pagination import Ordering, Page, PageArgs, SortKey, fetch_page, fetch_pages
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


def _live(user_id: str) -> list[sa.ColumnElement[bool]]:
    return [TAGS.c.user_id == user_id, TAGS.c.deleted_at.is_(None)]


def get_tags(conn: Connection, user_id: str, ids: Iterable[uuid.UUID]) -> dict[Any, RowMapping]:
    """The user's live tags with these ids, by id."""
    ids = list(ids)
    if not ids:
        return {}
    rows = conn.execute(sa.select(TAGS).where(*_live(user_id), TAGS.c.id.in_(ids))).mappings()
    return {row["id"]: row for row in rows}


def _search(user_id: str, search: str | None) -> list[sa.ColumnElement[bool]]:
    conditions = _live(user_id)
    if search:
        conditions.append(contains_text(TAGS.c.name, search))
    return conditions


def list_tags(conn: Connection, user_id: str, search: str | None, page: PageArgs) -> Page:
    """Live tags ordered by name (ignoring case)."""
    return fetch_page(conn, sa.select(TAGS).where(*_search(user_id, search)), TAG_ORDERING, page)


def count_tags(conn: Connection, user_id: str, search: str | None) -> int:
    query = sa.select(sa.func.count()).select_from(TAGS).where(*_search(user_id, search))
    return conn.execute(query).scalar_one()


def tags_of_tasks(
    conn: Connection, user_id: str, task_ids: Iterable[uuid.UUID]
) -> dict[Any, list[RowMapping]]:
    """Live tags of each task, by name."""
    task_ids = list(task_ids)
    grouped: dict[Any, list[RowMapping]] = defaultdict(list)
    if not task_ids:
        return grouped
    query = (
        sa.select(TAGS, TASK_TAGS.c.task_id.label("_task_id"))
        .join(
            TASK_TAGS,
            sa.and_(TASK_TAGS.c.user_id == TAGS.c.user_id, TASK_TAGS.c.tag_id == TAGS.c.id),
        )
        .where(*_live(user_id), TASK_TAGS.c.task_id.in_(task_ids))
        .order_by(*(key.order_by() for key in TAG_ORDERING.keys))
    )
    for row in conn.execute(query).mappings():
        grouped[row["_task_id"]].append(row)
    return grouped


def _tagged_tasks(user_id: str) -> sa.Select[Any]:
    return (
        sa.select(TASKS)
        .join(
            TASK_TAGS,
            sa.and_(TASK_TAGS.c.user_id == TASKS.c.user_id, TASK_TAGS.c.task_id == TASKS.c.id),
        )
        .where(TASKS.c.user_id == user_id, TASKS.c.deleted_at.is_(None))
    )


def tasks_of_tags(
    conn: Connection, user_id: str, tag_ids: Iterable[uuid.UUID], page: PageArgs
) -> dict[Any, Page]:
    """The same page of live tasks for each tag, newest first: one statement."""
    return fetch_pages(
        conn,
        _tagged_tasks(user_id),
        TAGGED_TASK_ORDERING,
        page,
        parent=TASK_TAGS.c.tag_id,
        parent_ids=tag_ids,
    )


def count_tasks_of_tags(
    conn: Connection, user_id: str, tag_ids: Iterable[uuid.UUID]
) -> dict[Any, int]:
    """How many live tasks carry each tag."""
    tag_ids = list(tag_ids)
    if not tag_ids:
        return {}
    query = (
        _tagged_tasks(user_id)
        .with_only_columns(TASK_TAGS.c.tag_id, sa.func.count())
        .where(TASK_TAGS.c.tag_id.in_(tag_ids))
        .group_by(TASK_TAGS.c.tag_id)
    )
    counts = dict.fromkeys(tag_ids, 0)
    counts.update(conn.execute(query).all())
    return counts


def _name_taken(conn: Connection, user_id: str, name: str, but: uuid.UUID | None) -> bool:
    query = sa.select(TAGS.c.id).where(*_live(user_id), sa.func.lower(TAGS.c.name) == name.lower())
    if but is not None:
        query = query.where(TAGS.c.id != but)
    return conn.execute(query.limit(1)).first() is not None


def _duplicate(name: str) -> Conflict:
    return Conflict(f"A tag named {name!r} exists already.", field="name")


def _write_named(conn: Connection, statement: Any, name: str) -> RowMapping:
    try:
        return conn.execute(statement.returning(TAGS)).mappings().one()
    except IntegrityError as exc:  # a concurrent writer took the name after our check
        raise _duplicate(name) from exc


def create_tag(conn: Connection, user_id: str, fields: dict[str, Any]) -> RowMapping:
    values = validate(TagFields, fields).model_dump()
    if _name_taken(conn, user_id, values["name"], but=None):
        raise _duplicate(values["name"])
    now = utcnow()
    statement = sa.insert(TAGS).values(
        **values, user_id=user_id, id=uuid.uuid4(), created_at=now, updated_at=now
    )
    return _write_named(conn, statement, values["name"])


def _lock_live_tag(conn: Connection, user_id: str, tag_id: uuid.UUID) -> RowMapping:
    query = sa.select(TAGS).where(*_live(user_id), TAGS.c.id == tag_id).with_for_update()
    row = conn.execute(query).mappings().first()
    if row is None:
        raise NotFound("Tag")
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
    return _write_named(conn, statement, values.get("name", current["name"]))


def delete_tag(conn: Connection, user_id: str, tag_id: uuid.UUID) -> RowMapping:
    """Move the tag to the trash: it leaves every list and frees its name."""
    _lock_live_tag(conn, user_id, tag_id)
    now = utcnow()
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
