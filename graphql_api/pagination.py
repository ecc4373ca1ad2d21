"""Keyset pagination: opaque cursors, one statement per page, and one per level for nested lists.

A list is ordered by sort keys ending in a unique key (the row id), so every row has a distinct
position and a cursor (the key values of a row) stays valid when rows are inserted before it.
Nested connections (`tag.tasks`, `conversation.messages`) page every parent at once with a
window function partitioned by the parent id. Page statements are fixed SQL per shape (see
`graphql_api.sql`): cursor values and page sizes are parameters.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql import ColumnElement, Select

from graphql_api.errors import BadUserInput
from graphql_api.sql import Record, Statements

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
    """One page of a connection, in display order. Each row is a `Record`: the query's columns
    by position (the sort keys and bookkeeping columns after them)."""

    rows: list[Record]
    has_next: bool
    has_previous: bool
    ordering: Ordering | None = None  # how the rows' cursors are made (None: no rows)
    keys: slice | None = None  # where a row's sort keys are
    total: int | None = None  # rows in the whole list, when the page's statement counted them

    @staticmethod
    def empty() -> Page:
        return Page([], has_next=False, has_previous=False)

    def cursor(self, index: int) -> str:
        """The cursor of row `index`: made when asked for (a client that reads `nodes` never
        asks), from the row's sort keys."""
        assert self.ordering is not None
        assert self.keys is not None
        return self.ordering.encode_cursor(self.rows[index][self.keys])


@dataclass(frozen=True)
class Query:
    """A scoped, filtered read that pages are cut from.

    `key` names its SQL shape (which conditions it has, never their values), `build` makes it
    as a Core select whose values are named `sa.bindparam`s, and `params` are this call's
    values. The page's SQL is built and compiled once per shape (see `graphql_api.sql`).
    """

    key: Hashable
    build: Callable[[], Select[Any]]
    params: Mapping[str, Any]


STATEMENTS = Statements()
"""Page statements by shape: query, ordering, direction, which cursor values are null."""


@dataclass(frozen=True)
class _Plan:
    """A page request turned into SQL: where it starts, where it stops, in which direction.
    `shape` tells the statements apart; `params` are this request's cursor values and limit."""

    walk: Ordering  # the ordering the rows are read in (reversed when paging backward)
    shape: tuple[Any, ...]
    conditions: Callable[[], list[ColumnElement[bool]]]
    params: dict[str, Any]

    def key_columns(self) -> list[ColumnElement[Any]]:
        return [key.expression.label(f"_k{i}") for i, key in enumerate(self.walk.keys)]

    def order_by(self) -> list[ColumnElement[Any]]:
        return [key.order_by() for key in self.walk.keys]


def _position(
    ordering: Ordering, values: Sequence[Any], prefix: str
) -> tuple[tuple[bool, ...], Callable[[], ColumnElement[bool]], dict[str, Any]]:
    """Rows past a cursor position: (shape: which values are null, the condition with its
    values as parameters, the parameters)."""
    nulls = tuple(value is None for value in values)

    def condition() -> ColumnElement[bool]:
        marks: list[sa.BindParameter[Any] | None] = [
            None if null else sa.bindparam(f"{prefix}{i}") for i, null in enumerate(nulls)
        ]
        return ordering.beyond(marks)

    params = {f"{prefix}{i}": value for i, value in enumerate(values) if value is not None}
    return nulls, condition, params


def _plan(ordering: Ordering, page: PageArgs) -> _Plan:
    parts: list[Callable[[], ColumnElement[bool]]] = []
    params: dict[str, Any] = {"_limit": page.size + 1}  # one extra row tells if there is more
    after = before = None
    if page.after is not None:
        after, condition, values = _position(
            ordering, ordering.decode_cursor(page.after, "after"), "_a"
        )
        parts.append(condition)
        params.update(values)
    if page.before is not None:
        before, condition, values = _position(
            ordering.reversed(), ordering.decode_cursor(page.before, "before"), "_b"
        )
        parts.append(condition)
        params.update(values)
    walk = ordering.reversed() if page.backward else ordering
    shape = (ordering.name, page.backward, after, before)
    return _Plan(walk, shape, lambda: [part() for part in parts], params)


def _to_page(
    rows: list[Record], ordering: Ordering, page: PageArgs, keys_end: int, total: int | None = None
) -> Page:
    """A page from the rows read (one more than the page, if there are more); the sort keys
    of each row end at column `keys_end` (counted from the end)."""
    more = len(rows) > page.size
    rows = rows[: page.size]
    if page.backward:
        rows.reverse()
    keys = slice(keys_end - len(ordering.keys), keys_end or None)
    if page.backward:
        return Page(rows, page.before is not None, more, ordering, keys, total)
    return Page(rows, more, page.after is not None, ordering, keys, total)


def fetch_page(
    conn: Connection, query: Query, ordering: Ordering, page: PageArgs, *, counted: bool = False
) -> Page:
    """One page of `query` in `ordering`: one statement. `counted`: the statement also counts
    the whole list (`Page.total`; a scalar subquery, so an index-only count as on its own)."""
    if page.size == 0:
        return Page.empty()
    plan = _plan(ordering, page)

    def build() -> Select[Any]:
        select = query.build().add_columns(*plan.key_columns())
        if counted:
            whole = sa.select(sa.func.count()).select_from(query.build().subquery())
            select = select.add_columns(whole.scalar_subquery().label("_total"))
        return (
            select.where(*plan.conditions())
            .order_by(*plan.order_by())
            .limit(sa.bindparam("_limit"))
        )

    statement = STATEMENTS.get(("page", query.key, plan.shape, counted), build)
    rows = statement.run(conn, **query.params, **plan.params)
    if not counted:
        return _to_page(rows, ordering, page, keys_end=0)
    # An empty page past a cursor tells nothing of the list; an empty first page, that it is.
    total = rows[0][-1] if rows else (0 if page.after is None and page.before is None else None)
    return _to_page(rows, ordering, page, keys_end=-1, total=total)


def fetch_pages(
    conn: Connection,
    query: Query,
    ordering: Ordering,
    page: PageArgs,
    *,
    parent: ColumnElement[Any],
    parent_ids: Iterable[Any],
) -> dict[Any, Page]:
    """The same page of `query` for each parent at once: one statement with a window function.
    `parent` must be part of `query.key`'s shape (it is a column of the statement).

    A page without a cursor also counts its parent's whole list (`Page.total`, a second
    window over rows the statement reads anyway), so `totalCount` costs no statement of its
    own; past a cursor the statement does not see the whole list, and the count is left to
    the caller."""
    parent_ids = list(parent_ids)
    if page.size == 0 or not parent_ids:
        return {parent_id: Page.empty() for parent_id in parent_ids}
    plan = _plan(ordering, page)
    counted = page.after is None and page.before is None

    def build() -> Select[Any]:
        position = sa.func.row_number().over(partition_by=parent, order_by=plan.order_by())
        columns = [parent.label("_parent"), position.label("_rn")]
        if counted:
            columns.append(sa.func.count().over(partition_by=parent).label("_total"))
        ranked = (
            query.build()
            .add_columns(*plan.key_columns(), *columns)
            .where(parent.in_(sa.bindparam("_parents", expanding=True)), *plan.conditions())
            .subquery()
        )
        return (
            sa.select(ranked).where(ranked.c._rn <= sa.bindparam("_limit")).order_by(ranked.c._rn)
        )

    statement = STATEMENTS.get(("pages", query.key, plan.shape), build)
    keys_end = -3 if counted else -2  # the parent, the position, (the count)
    grouped: dict[Any, list[Record]] = {parent_id: [] for parent_id in parent_ids}
    for row in statement.run(conn, **query.params, **plan.params, _parents=parent_ids):
        grouped[row[keys_end]].append(row)
    return {
        parent_id: _to_page(
            rows,
            ordering,
            page,
            keys_end,
            total=(rows[0][-1] if rows else 0) if counted else None,
        )
        for parent_id, rows in grouped.items()
    }
