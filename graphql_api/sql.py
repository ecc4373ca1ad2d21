"""Hot reads as fixed SQL on the driver: built from the tables once, compiled once per dialect,
run on the DB-API cursor, answered as plain tuples.

SQLAlchemy Core, per execution, builds the statement objects, computes their cache key, looks
up the compiled form, and wraps every row in a `Row`/`RowMapping`; on the task list that was
about a millisecond of CPU per request, more than the statements cost on the database. The
reads a request repeats most are therefore kept as `Statement`s: written with Core (the tables
stay the single source of column names and types), compiled once per dialect and shape into
SQL text, then executed on the driver's cursor with the types' own bind and result processors
(so values come out exactly as Core gives them: aware UTC datetimes, enums, UUIDs on SQLite
too). Writes and the cold reads stay on Core.

What stays as it was on the Core path:
- the transaction: a statement runs in the connection's transaction (begun if none, as Core's
  autobegin does), so row-level security's `app.user_id` applies;
- `before_cursor_execute` listeners see every statement (the request's statement counter,
  metrics, the statement budgets of the tests, the benchmark's capture); when a listener waits
  for the end of statements (tracing: a span per statement), `after_cursor_execute` and
  `handle_error` are sent too, with an execution context of their own to keep state on;
- driver errors are raised as SQLAlchemy's `DBAPIError` subclasses, and a lost connection is
  invalidated, so retries and SERVICE_UNAVAILABLE work as before.
"""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect, RowMapping
from sqlalchemy.engine.base import ExceptionContextImpl
from sqlalchemy.sql import Select

Record = Sequence[Any]
"""A row as the fixed reads hand it on: the selected columns by position (a tuple)."""

AnyRow = Record | RowMapping
"""What `from_row` takes: a record from a read, or the `RowMapping` a write returns (its
columns in the table's order, like a record's)."""


def as_record(row: AnyRow) -> Record:
    """The columns of `row` by position."""
    return tuple(row.values()) if isinstance(row, RowMapping) else row


Build = Callable[[], Select[Any]]


def position(table: sa.Table, column: str) -> int:
    """Where `column` sits in the rows of `sa.select(table)` (and of `.returning(table)`)."""
    return list(table.columns.keys()).index(column)


@dataclass(frozen=True, slots=True)
class _Compiled:
    """A statement's SQL text and conversions for one dialect."""

    sql: str
    placeholder: str  # how one parameter is written: "%(name)s" or ":name"
    expanding: frozenset[str]  # list parameters (IN)
    arrays: bool  # list parameters are arrays (PostgreSQL), else a placeholder per item
    binds: Mapping[str, Callable[[Any], Any]]  # value conversions of the parameters that need one
    defaults: Mapping[str, Any]  # parameters the compiler added (SQLite's OFFSET 0), converted
    decode: Callable[[list[tuple[Any, ...]]], list[tuple[Any, ...]]]


class Statement:
    """One read: a Core select (made by `build`, once) with named `sa.bindparam`s.

    `run(conn, **params)` returns the rows as tuples in the select's column order. A parameter
    bound with `sa.bindparam(name, expanding=True)` takes a non-empty list (`col IN (...)`).
    """

    def __init__(self, build: Build) -> None:
        self._build = build
        self._compiled: dict[Hashable, _Compiled] = {}

    def run(self, conn: Connection, **params: Any) -> list[Record]:
        dialect = conn.dialect
        key = (type(dialect), dialect.server_version_info)
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = _compile(self._build(), dialect)
        sql, values = _bind(compiled, params)
        return cast(list[Record], compiled.decode(execute(conn, sql, values)))


def owned_by_ids(table: sa.Table) -> Statement:
    """The caller's rows of `table` whose `id` is in the list parameter `ids`."""
    return Statement(
        lambda: sa.select(table).where(
            table.c.user_id == sa.bindparam("user_id"),
            table.c.id.in_(sa.bindparam("ids", expanding=True)),
        )
    )


def rows_by_key(
    statement: Statement, conn: Connection, user_id: str, ids: Iterable[Any], key: int
) -> dict[Any, Record]:
    """The rows `statement` finds for `ids` (its `ids` parameter), by their column `key`; no
    statement at all when there are no ids."""
    ids = list(ids)
    if not ids:
        return {}
    return {row[key]: row for row in statement.run(conn, user_id=user_id, ids=ids)}


def rows_grouped(
    statement: Statement, conn: Connection, user_id: str, ids: Iterable[Any]
) -> dict[Any, list[Record]]:
    """The rows `statement` finds for `ids`, grouped by their last column (the parent's id);
    no statement at all when there are no ids."""
    ids = list(ids)
    grouped: dict[Any, list[Record]] = defaultdict(list)
    if ids:
        for row in statement.run(conn, user_id=user_id, ids=ids):
            grouped[row[-1]].append(row)
    return grouped


class Statements:
    """`Statement`s made on demand by shape: reads whose SQL depends on which filters, cursors
    or sort keys a request uses. The key names the shape; values are parameters, never part of
    it. Bounded (least recently used first out), like Core's own compiled cache."""

    def __init__(self, size: int = 500) -> None:
        self._get = functools.lru_cache(maxsize=size)(_statement_of)

    def get(self, key: Hashable, build: Build) -> Statement:
        """The statement of shape `key`; `build` makes its select on first use (so it must
        depend on nothing but `key`)."""
        return self._get(_Keyed(key, build))


class _Keyed:
    """A cache key that carries its builder but compares (and hashes) by the key alone."""

    __slots__ = ("build", "key")

    def __init__(self, key: Hashable, build: Build) -> None:
        self.key = key
        self.build = build

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Keyed) and other.key == self.key


def _statement_of(keyed: _Keyed) -> Statement:
    return Statement(keyed.build)


def execute(
    conn: Connection, sql: str, params: Mapping[str, Any] | None = None
) -> list[tuple[Any, ...]]:
    """Run `sql` on the connection's DB-API cursor, in its transaction; the rows as tuples (none
    for a statement without rows). Parameters are named, written `%(name)s` on PostgreSQL and
    `:name` on SQLite; for asyncpg they are numbered (`$1`) on the way."""
    if not conn.in_transaction():
        conn.begin()  # what Core's autobegin would do
    values: Any = params or {}
    numbered = conn.dialect.paramstyle == "numeric_dollar"
    if numbered:
        sql, names = _numbered(sql)
        values = [values[name] for name in names]
    dispatch = conn.dispatch
    # A span per statement (tracing) ends in `after_cursor_execute` or `handle_error`: only
    # with listeners for those is there more to do than before (a context to keep it on).
    ends = dispatch.after_cursor_execute or conn.dialect.dispatch.handle_error
    execution = _Execution() if ends else None
    dbapi_connection = conn.connection
    cursor = dbapi_connection.cursor()
    try:
        for listener in dispatch.before_cursor_execute:
            listener(conn, cursor, sql, values, execution, False)
        cursor.execute(sql, values)
        if execution is not None:
            for listener in dispatch.after_cursor_execute:
                listener(conn, cursor, sql, values, execution, False)
        if cursor.description is None:
            return []
        rows = cursor.fetchall()
        return [tuple(row) for row in rows] if numbered else list(rows)
    except conn.dialect.loaded_dbapi.Error as exc:
        raise _wrapped(conn, exc, sql, params, cursor, execution) from exc
    finally:
        cursor.close()


class _Execution:
    """Stands for Core's `ExecutionContext` in the events of one statement: listeners keep
    what they need between `before_cursor_execute` and the end on it (a tracing span)."""


_PYFORMAT = re.compile(r"%\((\w+)\)s|%%")


@functools.lru_cache(maxsize=1024)
def _numbered(sql: str) -> tuple[str, tuple[str, ...]]:
    """`sql` with its `%(name)s` parameters numbered `$n` (a name used twice keeps its number),
    and the names in number order."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "%"
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return _PYFORMAT.sub(number, sql), tuple(names)


def _wrapped(
    conn: Connection, exc: Exception, sql: str, params: Any, cursor: Any, execution: Any
) -> sa.exc.DBAPIError:
    """The error Core would raise for `exc`; a lost connection is invalidated, and the
    `handle_error` listeners are told, as Core does (a replacement error one returns is not
    used)."""
    dialect = conn.dialect
    lost = dialect.is_disconnect(exc, conn.connection.dbapi_connection, cursor)  # type: ignore[arg-type]
    if lost:
        conn.invalidate(exc)
    error = sa.exc.DBAPIError.instance(
        sql,
        params,
        exc,
        dialect.loaded_dbapi.Error,
        connection_invalidated=lost,
        dialect=dialect,
    )
    assert isinstance(error, sa.exc.DBAPIError)
    if execution is not None:
        failure = ExceptionContextImpl(
            exc,
            error,
            conn.engine,
            dialect,
            conn,
            cursor,
            sql,
            params,
            execution,
            lost,
            True,
            False,
        )
        for listener in dialect.dispatch.handle_error:
            listener(failure)
    return error


# --- compiling -------------------------------------------------------------------------------


def _compile(select: Select[Any], dialect: Dialect) -> _Compiled:
    named = _named(dialect)
    compiled = select.compile(dialect=named)
    binds: dict[str, Callable[[Any], Any]] = {}
    defaults: dict[str, Any] = {}
    for name, value in compiled.params.items():
        bind = compiled.binds[name]
        process = bind.type.dialect_impl(named).bind_processor(named)
        if process is not None:
            binds[name] = process
        if not bind.required:  # a literal the compiler made a parameter (SQLite's OFFSET 0)
            defaults[name] = process(value) if process is not None else value
    processors = [
        column.type.dialect_impl(named).result_processor(named, None)
        for column in select.selected_columns
    ]
    sql = compiled.string
    expanding = frozenset(name for name in compiled.params if compiled.binds[name].expanding)
    arrays = dialect.name == "postgresql"
    if arrays:
        sql = _as_arrays(sql, {name: compiled.binds[name] for name in expanding}, named)
    return _Compiled(
        sql=sql,
        placeholder="%({})s" if named.paramstyle == "pyformat" else ":{}",
        expanding=expanding,
        arrays=arrays,
        binds=binds,
        defaults=defaults,
        decode=_decoder(processors),
    )


def _as_arrays(sql: str, lists: Mapping[str, sa.BindParameter[Any]], dialect: Dialect) -> str:
    """On PostgreSQL, each list parameter is one array: `col = ANY($2::UUID[])`. One statement,
    prepared and planned once, for any number of items. Written as a list of placeholders
    (`IN ($2, $3, ...)`), a generic plan built that list anew for every row it filtered: a
    batch of 10,000 ids took 4.8 s; as an array, 1.6 s on tables without statistics and
    under 1 s with them (docs/benchmarks.md, "Issue 11, fourth session")."""
    for name, bind in lists.items():
        marker = f"__[POSTCOMPILE_{name}]"
        negated = f"NOT IN ({marker})" in sql
        element = bind.type.compile(dialect=dialect)
        sql = sql.replace(f" IN ({marker})", f" = ANY (%({name})s::{element}[])")
        if negated or marker in sql:
            raise ValueError(f"{name}: only `IN` takes a list parameter here")
    return sql


_TWINS: dict[type[Dialect], Dialect] = {}


def _named(dialect: Dialect) -> Dialect:
    """`dialect`, or for a positional one (SQLite's qmark, asyncpg's `$n`) a twin that compiles
    named parameters: one way to pass parameters (a dict) for every dialect, and the SQL text
    `execute` takes (`%(name)s` on PostgreSQL, `:name` on SQLite)."""
    if dialect.paramstyle in ("pyformat", "named"):
        return dialect
    twin = _TWINS.get(type(dialect))
    if twin is None:
        style = "pyformat" if dialect.name == "postgresql" else "named"
        twin = _TWINS[type(dialect)] = type(dialect)(paramstyle=style)  # type: ignore[call-arg]
    return twin


def _decoder(
    processors: Sequence[Callable[[Any], Any] | None],
) -> Callable[[list[tuple[Any, ...]]], list[tuple[Any, ...]]]:
    """A function converting fetched rows with the columns' result processors, written out
    for this column list (a generated comprehension costs a fraction of a loop over columns)."""
    if not any(processors):
        return _as_is
    terms = [
        f"p{index}(r[{index}])" if process is not None else f"r[{index}]"
        for index, process in enumerate(processors)
    ]
    source = f"lambda rows: [({', '.join(terms)},) for r in rows]"
    namespace = {f"p{index}": process for index, process in enumerate(processors) if process}
    decode: Callable[[list[tuple[Any, ...]]], list[tuple[Any, ...]]] = eval(source, namespace)  # noqa: S307
    return decode


def _as_is(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return rows


# --- binding ---------------------------------------------------------------------------------


def _bind(compiled: _Compiled, params: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The SQL text (list parameters expanded) and the converted parameter values."""
    binds = compiled.binds
    values = dict(compiled.defaults)
    sql = compiled.sql
    for name, value in params.items():
        process = binds.get(name)
        if name in compiled.expanding:
            items = list(value)
            if not items:
                raise ValueError(f"{name}: an IN list needs at least one item")
            if compiled.arrays:
                values[name] = [process(item) for item in items] if process else items
                continue
            sql = _expand(sql, compiled.placeholder, name, len(items))
            for index, item in enumerate(items):
                values[f"{name}_{index}"] = process(item) if process else item
        else:
            values[name] = process(value) if process else value
    return sql, values


@functools.lru_cache(maxsize=1024)
def _expand(sql: str, placeholder: str, name: str, count: int) -> str:
    """`sql` with list parameter `name` written as `count` placeholders (cached per length)."""
    marks = ", ".join(placeholder.format(f"{name}_{index}") for index in range(count))
    return sql.replace(f"__[POSTCOMPILE_{name}]", marks)
