"""Keyset pagination: opaque cursors, one statement per page, and one per level for nested lists.

A list is ordered by sort keys ending in a unique key (the row id), so every row has a distinct
position and a cursor (the key values of a row) stays valid when rows are inserted before it.
Nested connections (`tag.tasks`, `conversation.messages`) page every parent at once with a
window function partitioned by the parent id.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.sql import ColumnElement, Select

from graphql_api.errors import BadUserInput

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


@dataclass(frozen=True)
class PageArgs:
    """The Relay arguments of one connection field."""

    first: int | None = None
    after: str | None = None
    last: int | None = None
    before: str | None = None

    def __post_init__(self) -> None:
        if self.first is not None and self.last is not None:
            raise BadUserInput("Pass either `first` or `last`, not both.", field="last")
        for name in ("first", "last"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= MAX_PAGE_SIZE:
                raise BadUserInput(f"`{name}` must be between 0 and {MAX_PAGE_SIZE}.", field=name)

    @property
    def backward(self) -> bool:
        """Paging from the end: `last` given."""
        return self.last is not None

    @property
    def size(self) -> int:
        if self.last is not None:
            return self.last
        return DEFAULT_PAGE_SIZE if self.first is None else self.first


def _identity(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class SortKey:
    """One ORDER BY term. `dump`/`load` turn its values into JSON for cursors and back."""

    expression: ColumnElement[Any]
    descending: bool = False
    nullable: bool = False
    dump: Callable[[Any], Any] = _identity
    load: Callable[[Any], Any] = _identity

    def reversed(self) -> SortKey:
        return SortKey(self.expression, not self.descending, self.nullable, self.dump, self.load)

    def order_by(self) -> ColumnElement[Any]:
        # NULLs sort as if larger than any value, in both directions.
        if self.descending:
            term = self.expression.desc()
            return term.nulls_first() if self.nullable else term
        term = self.expression.asc()
        return term.nulls_last() if self.nullable else term

    def equals(self, value: Any) -> ColumnElement[bool]:
        if value is None:
            return self.expression.is_(None)
        equal: ColumnElement[bool] = self.expression == value
        return equal

    def beyond(self, value: Any) -> ColumnElement[bool]:
        """Rows strictly after `value` in this key's order (NULL counts as the largest)."""
        if value is None:
            if self.descending and self.nullable:
                return self.expression.is_not(None)
            return sa.false()
        if self.descending:
            before: ColumnElement[bool] = self.expression < value
            return before
        after: ColumnElement[bool] = self.expression > value
        return sa.or_(after, self.expression.is_(None)) if self.nullable else after


@dataclass(frozen=True)
class Ordering:
    """The sort keys of one list; `name` is stamped into its cursors so they cannot be mixed."""

    name: str
    keys: tuple[SortKey, ...]

    def reversed(self) -> Ordering:
        return Ordering(self.name, tuple(key.reversed() for key in self.keys))

    def encode_cursor(self, values: Sequence[Any]) -> str:
        dumped = (
            None if v is None else key.dump(v) for key, v in zip(self.keys, values, strict=True)
        )
        payload = [self.name, *dumped]
        raw = json.dumps(payload, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def decode_cursor(self, cursor: str, argument: str) -> list[Any]:
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            name, *values = json.loads(raw)
            if name != self.name or len(values) != len(self.keys):
                raise ValueError(name)
            return [
                key.load(v) if v is not None else None
                for key, v in zip(self.keys, values, strict=True)
            ]
        except (ValueError, TypeError, binascii.Error, json.JSONDecodeError) as exc:
            raise BadUserInput(
                f"`{argument}` is not a cursor of this list in this order.", field=argument
            ) from exc

    def beyond(self, values: Sequence[Any]) -> ColumnElement[bool]:
        """Rows strictly after the position `values` (a lexicographic comparison)."""
        alternatives = []
        for index, key in enumerate(self.keys):
            prefix = [k.equals(v) for k, v in zip(self.keys[:index], values[:index], strict=True)]
            alternatives.append(sa.and_(*prefix, key.beyond(values[index])))
        return sa.or_(*alternatives)


@dataclass
class Page:
    """One page of a connection, in display order."""

    rows: list[RowMapping]
    cursors: list[str]
    has_next: bool
    has_previous: bool

    @staticmethod
    def empty() -> Page:
        return Page([], [], has_next=False, has_previous=False)


@dataclass(frozen=True)
class _Plan:
    """A page request turned into SQL: where it starts, where it stops, in which direction."""

    ordering: Ordering
    conditions: list[ColumnElement[bool]] = field(default_factory=list)
    limit: int = DEFAULT_PAGE_SIZE

    def key_columns(self) -> list[ColumnElement[Any]]:
        return [key.expression.label(f"_k{i}") for i, key in enumerate(self.ordering.keys)]


def _plan(ordering: Ordering, page: PageArgs) -> _Plan:
    conditions = []
    if page.after is not None:
        conditions.append(ordering.beyond(ordering.decode_cursor(page.after, "after")))
    if page.before is not None:
        reverse = ordering.reversed()
        conditions.append(reverse.beyond(ordering.decode_cursor(page.before, "before")))
    walk = ordering.reversed() if page.backward else ordering
    return _Plan(walk, conditions, page.size + 1)  # one extra row tells if there is more


def _to_page(rows: list[RowMapping], ordering: Ordering, page: PageArgs) -> Page:
    more = len(rows) > page.size
    rows = rows[: page.size]
    if page.backward:
        rows.reverse()
    keys = len(ordering.keys)
    cursors = [ordering.encode_cursor([row[f"_k{i}"] for i in range(keys)]) for row in rows]
    if page.backward:
        return Page(rows, cursors, has_next=page.before is not None, has_previous=more)
    return Page(rows, cursors, has_next=more, has_previous=page.after is not None)


def fetch_page(conn: Connection, query: Select[Any], ordering: Ordering, page: PageArgs) -> Page:
    """One page of `query` (already filtered and scoped) in `ordering`: one statement."""
    if page.size == 0:
        return Page.empty()
    plan = _plan(ordering, page)
    statement = (
        query.add_columns(*plan.key_columns())
        .where(*plan.conditions)
        .order_by(*(key.order_by() for key in plan.ordering.keys))
        .limit(plan.limit)
    )
    rows = list(conn.execute(statement).mappings())
    return _to_page(rows, ordering, page)


def fetch_pages(
    conn: Connection,
    query: Select[Any],
    ordering: Ordering,
    page: PageArgs,
    *,
    parent: ColumnElement[Any],
    parent_ids: Iterable[Any],
) -> dict[Any, Page]:
    """The same page of `query` for each parent at once: one statement with a window function."""
    parent_ids = list(parent_ids)
    if page.size == 0 or not parent_ids:
        return {parent_id: Page.empty() for parent_id in parent_ids}
    plan = _plan(ordering, page)
    position = sa.func.row_number().over(
        partition_by=parent, order_by=[key.order_by() for key in plan.ordering.keys]
    )
    ranked = (
        query.add_columns(*plan.key_columns(), parent.label("_parent"), position.label("_rn"))
        .where(parent.in_(parent_ids), *plan.conditions)
        .subquery()
    )
    statement = sa.select(ranked).where(ranked.c._rn <= plan.limit).order_by(ranked.c._rn)
    grouped: dict[Any, list[RowMapping]] = {parent_id: [] for parent_id in parent_ids}
    for row in conn.execute(statement).mappings():
        grouped[row["_parent"]].append(row)
    return {parent_id: _to_page(rows, ordering, page) for parent_id, rows in grouped.items()}
