"""Engines, dialect set-up, and the per-request database handle.

The data layer is synchronous code: functions of `(connection, user_id)` on SQLAlchemy's
`Connection`. On PostgreSQL the request path runs them on the event loop over asyncpg, in a
greenlet (SQLAlchemy's `greenlet_spawn`): no thread to wake per batch, and a driver that decodes
rows in C (docs/benchmarks.md, "an async driver"). psycopg2 stays for migrations and the CLI,
and for the request path when `DB_ASYNC_DRIVER=false`. SQLite (sqlite3) runs in worker threads.
A request checks out ONE connection on first use and keeps it to the end; an `asyncio.Lock`
makes sure only one batch at a time touches it.

Reads share one transaction per request (one snapshot on SQLite, one round trip saved per loader
batch on PostgreSQL). Each write runs in a transaction of its own, committed before the mutation
answers, so a mutation is all or nothing and an answered mutation is durable.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Concatenate, ParamSpec, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.util import greenlet_spawn

from graphql_api import sql
from graphql_api.changes.record import recording
from graphql_api.errors import ServiceUnavailable, Unauthenticated
from graphql_api.settings import Settings
from graphql_api.users.repository import (
    external_user_id,
    provision_user,
    token_status,
)

P = ParamSpec("P")
T = TypeVar("T")

SQLITE_BUSY_TIMEOUT_MS = 30_000


def create_engine(settings: Settings, *, request_limits: bool = True) -> Engine:
    """An engine configured for its dialect. Tools (migrations, seeding) pass
    `request_limits=False`: the API's statement and lock timeouts are not meant for them."""
    url = sa.make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url, settings)
    return sa.create_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        pool_recycle=1800,
        connect_args={"options": options}
        if request_limits and (options := _session_options(settings))
        else {},
    )


def _session_limits(settings: Settings) -> dict[str, str]:
    """Server-side limits for every connection of the API (0 leaves PostgreSQL's default).
    None through a transaction-mode pooler: PgBouncer refuses startup parameters, and a SET
    would stay on whichever server connection it ran on; the role carries them there."""
    if settings.database_pooler == "transaction":
        return {}
    limits = {
        "statement_timeout": settings.db_statement_timeout_ms,
        "lock_timeout": settings.db_lock_timeout_ms,
        "idle_in_transaction_session_timeout": settings.db_idle_in_transaction_timeout_ms,
    }
    return {name: str(value) for name, value in limits.items() if value}


def _session_options(settings: Settings) -> str:
    """`_session_limits` as libpq's `options`."""
    return " ".join(f"-c {name}={value}" for name, value in _session_limits(settings).items())


def uses_async_driver(settings: Settings) -> bool:
    """Whether the request path reaches PostgreSQL through asyncpg (see the module's doc)."""
    url = sa.make_url(settings.database_url)
    return settings.db_async_driver and url.get_backend_name() == "postgresql"


def create_async_request_engine(settings: Settings) -> AsyncEngine:
    """The request path's asyncpg engine, on the server and database of `DATABASE_URL`."""
    url = sa.make_url(settings.database_url).set(drivername="postgresql+asyncpg")
    query = dict(url.query)
    sslmode = query.pop("sslmode", None)  # libpq's name; asyncpg takes the same values as `ssl`
    if sslmode is not None and sslmode != "disable":
        query["ssl"] = sslmode
    query.pop("channel_binding", None)  # libpq only (Neon's URLs carry it); asyncpg negotiates
    return create_async_engine(
        url.set(query=query),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        pool_recycle=1800,
        connect_args={
            "server_settings": {**_session_limits(settings), **_plan_cache(settings)},
            **_statement_caches(settings),
        },
    )


def _plan_cache(settings: Settings) -> dict[str, str]:
    """How PostgreSQL plans the prepared statements asyncpg keeps (none through the pooler).
    `auto`, PostgreSQL's default, is not sent: a pooler may refuse startup parameters."""
    if settings.database_pooler == "transaction" or settings.db_plan_cache_mode == "auto":
        return {}
    return {"plan_cache_mode": settings.db_plan_cache_mode}


def _statement_caches(settings: Settings) -> dict[str, Any]:
    """asyncpg's connection arguments for the pooler: through one in transaction mode, a named
    prepared statement kept for later would be missing from (or clash on) the server connection
    the next transaction gets. So nothing is cached, by asyncpg (its own queries: type
    introspection) or by SQLAlchemy, and every statement is the unnamed one: parsed, described
    and executed on one server connection (asyncpg sends no Sync in between), then replaced by
    the next. Unique names (SQLAlchemy's recipe for PgBouncer) would add a Close per statement,
    sent later on whatever server connection that transaction gets: they would pile up. The
    price, measured in docs/benchmarks.md: a round trip more per statement (the Parse and
    Describe asyncpg waits on), and a plan made at every execution, as psycopg2's are."""
    if settings.database_pooler != "transaction":
        return {}
    return {
        "statement_cache_size": 0,
        "prepared_statement_cache_size": 0,
        "prepared_statement_name_func": _unnamed,
    }


def _unnamed() -> str:
    return ""


def _sqlite_engine(url: sa.URL, settings: Settings) -> Engine:
    engine = sa.create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin (see "begin").
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # A writer takes the write lock up front: a deferred transaction that reads and then
        # writes fails with SQLITE_BUSY instead of waiting when another writer got there first.
        immediate = connection.get_execution_options().get("sqlite_immediate", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


# SQLSTATEs after which trying again later may well succeed.
TRANSIENT_SQLSTATES = frozenset(
    {
        "57014",  # query_canceled: statement_timeout
        "55P03",  # lock_not_available: lock_timeout
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "57P01",  # admin_shutdown
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now
        "25P03",  # idle_in_transaction_session_timeout
    }
)


def is_transient(exc: sa.exc.DBAPIError) -> bool:
    """A failure of the moment (timeout, lock, restart) rather than of the request itself."""
    if exc.connection_invalidated:
        return True
    if getattr(exc.orig, "pgcode", None) in TRANSIENT_SQLSTATES:
        return True
    return isinstance(exc, sa.exc.OperationalError) and "database is locked" in str(exc.orig)


def is_transaction_control(statement: str) -> bool:
    """True for BEGIN/COMMIT/ROLLBACK, which some dialects send as statements and others don't."""
    return statement.lstrip()[:8].upper().startswith(("BEGIN", "COMMIT", "ROLLBACK"))


class Database:
    """The process-wide engine, and how the data layer's synchronous code reaches it: in a
    greenlet on the event loop (asyncpg), or in a worker thread (psycopg2, sqlite3)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._async_engine: AsyncEngine | None = None
        self._executor: ThreadPoolExecutor | None = None
        if uses_async_driver(settings):
            self._async_engine = create_async_request_engine(settings)
            self.engine = self._async_engine.sync_engine
        else:
            self.engine = create_engine(settings)
            threads = settings.db_threads or settings.db_pool_size + settings.db_max_overflow
            self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="db")

    def request(self, principal: Principal | None) -> RequestDb:
        """A handle for one request, scoped to `principal` (None: unauthenticated)."""
        return RequestDb(self, principal)

    async def run(self, fn: Callable[[], T]) -> T:
        """Run the data layer's `fn` (with the caller's context: its request id)."""
        if self._executor is None:
            return await greenlet_spawn(fn)
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, functools.partial(context.run, fn)
        )

    async def dispose(self) -> None:
        """Close the pool's connections (and stop the threads)."""
        if self._async_engine is not None:
            await self._async_engine.dispose()
        else:
            assert self._executor is not None
            self._executor.shutdown(wait=True)
            self.engine.dispose()


def _bind(fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Callable[..., T]:
    """`fn` with its trailing arguments bound; the connection (and user id) come first."""

    def call(*leading: Any) -> T:
        return fn(*leading, *args, **kwargs)

    return call


@dataclass(frozen=True)
class Principal:
    """Who a request acts for, from a verified token (never from anything else a client sends)."""

    user_id: str
    email: str | None = None
    # An identity provider's token names (issuer, subject): provisioned on first sight, under
    # an id derived from the pair, so a provider's `sub` never acts as a built-in account.
    issuer: str | None = None
    subject: str | None = None
    # When the token was issued (aware UTC): a token issued at or before its user's
    # `tokens_valid_after` no longer works. None (no token behind it: tools, tests) works only
    # while the user has no cut-off.
    issued_at: datetime | None = None

    @classmethod
    def of_provider(
        cls, issuer: str, subject: str, email: str | None, issued_at: datetime | None = None
    ) -> Principal:
        user_id = external_user_id(issuer, subject)
        return cls(
            user_id=user_id, email=email, issuer=issuer, subject=subject, issued_at=issued_at
        )


class RequestEnded(RuntimeError):
    """A database call after the end of its request."""


class RequestDb:
    """One request's access to the database, scoped to its principal.

    `read`/`write` pass `(connection, user_id)` to a data-layer function, so a resolver cannot
    call one without the authenticated user's id; `read_public`/`write_public` serve the few
    operations that have no user yet (sign-up, sign-in).
    """

    def __init__(self, database: Database, principal: Principal | None) -> None:
        self._database = database
        self.principal = principal
        self._connection: Connection | None = None
        self._user_known = False
        self._entered = False  # the current transaction got past its first statement
        self._statements = [0]  # counted by a listener on the engine (observability)
        self._closed = False
        self._lock = asyncio.Lock()

    @property
    def user_id(self) -> str:
        if self.principal is None:
            raise Unauthenticated("Sign in first: send `Authorization: Bearer <token>`.")
        return self.principal.user_id

    async def read(
        self, fn: Callable[Concatenate[Connection, str, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run a scoped read in the request's read transaction."""
        user_id = self.user_id
        return await self._run(_bind(fn, args, kwargs), user_id, write=False)

    async def write(
        self, fn: Callable[Concatenate[Connection, str, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run a scoped write in a transaction of its own, committed before this returns."""
        user_id = self.user_id
        return await self._run(_bind(fn, args, kwargs), user_id, write=True)

    async def read_public(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run an unscoped read: only for the authentication paths."""
        return await self._run(_bind(fn, args, kwargs), None, write=False)

    async def write_public(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run an unscoped write: only for the authentication paths."""
        return await self._run(_bind(fn, args, kwargs), None, write=True)

    async def _run(self, call: Callable[..., T], user_id: str | None, *, write: bool) -> T:
        async with self._lock:
            if self._closed:
                # Work the request abandoned (a loader batch due after an error ended it)
                # must not open a connection that nothing would give back.
                raise RequestEnded("The request has ended: its database handle is closed.")
            work = asyncio.ensure_future(
                self._database.run(
                    functools.partial(self._call_on_connection, call, user_id, write)
                )
            )
            try:
                return await asyncio.shield(work)
            except asyncio.CancelledError:
                # The work is never cancelled midway. A thread cannot be stopped; and asyncpg,
                # cancelled during a BEGIN, takes its transaction for failed while it may have
                # begun on the server, so the connection would start no transaction again.
                # Keep the connection locked until the work is done, or the next statement
                # (or the request's end, which closes the connection) would use it meanwhile.
                # graphql-core cancels a field's siblings when an error propagates past them.
                await _finished(work)
                raise

    def _call_on_connection(self, call: Callable[..., T], user_id: str | None, write: bool) -> T:
        """Run `call`, once more on a fresh connection if the pooled one turns out to be dead
        (a database restart) and nothing could have been written yet."""
        for attempt in (1, 2):
            self._entered = False
            try:
                return self._attempt(call, user_id, write)
            except sa.exc.DBAPIError as exc:
                if exc.connection_invalidated:
                    self._discard_connection()
                    if attempt == 1 and not (write and self._entered):
                        continue
                if is_transient(exc):
                    raise ServiceUnavailable(
                        "The database is unavailable or busy: retry shortly."
                    ) from exc
                raise
        raise AssertionError("unreachable")

    @property
    def statements(self) -> int:
        """SQL statements this request has sent so far."""
        return self._statements[0]

    def _discard_connection(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            _forget_counter(connection)
            with suppress(sa.exc.DBAPIError):
                connection.close()

    def _attempt(self, call: Callable[..., T], user_id: str | None, write: bool) -> T:
        connection = self._connect()
        args = (connection,) if user_id is None else (connection, user_id)
        if write or user_id is None:  # public calls, too, get a transaction of their own
            if connection.in_transaction():
                connection.rollback()  # end the read snapshot; reads have nothing to commit
            with _write_transaction(connection):
                self._enter(connection, user_id, writing=True)
                return call(*args)
        try:
            if not connection.in_transaction():
                connection.begin()
                self._enter(connection, user_id, writing=False)
            return call(*args)
        except BaseException:
            connection.rollback()  # a failed statement must not poison later reads
            raise

    def _enter(self, connection: Connection, user_id: str | None, *, writing: bool) -> None:
        """The first statement of every transaction: whom it acts for (the row-level security
        setting on PostgreSQL), and, once per request, that this user exists."""
        if user_id is None:
            allow_account_lookup(connection)
        elif self._user_known:
            scope_to_user(connection, user_id)
        else:
            self._check_user(connection, user_id, writing=writing)
        self._entered = True

    def _check_user(self, connection: Connection, user_id: str, *, writing: bool) -> None:
        principal = self.principal
        assert principal is not None
        accepted = check_token_user(connection, user_id, principal.issued_at)
        if accepted is False:
            raise Unauthenticated(
                "This token was signed out (password changed, or signed out everywhere): "
                "sign in again."
            )
        if accepted is None:
            if principal.issuer is None or principal.subject is None:
                raise Unauthenticated("The account of this token no longer exists.")
            identity = (principal.issuer, principal.subject, principal.email)
            if writing:
                provision_user(connection, *identity)
            else:  # reads are never committed: provision in a short write of its own
                connection.rollback()
                with _write_transaction(connection):
                    scope_to_user(connection, user_id)
                    provision_user(connection, *identity)
                connection.begin()
                scope_to_user(connection, user_id)
        self._user_known = True

    def _connect(self) -> Connection:
        if self._connection is None:
            try:
                self._connection = self._database.engine.connect()
                self._connection.info["statement_counter"] = self._statements
            except sa.exc.TimeoutError as exc:
                raise ServiceUnavailable(
                    "The service is busy: no database connection is free. Retry shortly."
                ) from exc
            except (sa.exc.DBAPIError, OSError) as exc:  # asyncpg lets a refused socket through
                raise ServiceUnavailable("The database is unavailable: retry shortly.") from exc
        return self._connection

    async def close(self) -> None:
        """End the request's use of the database: give the connection back, refuse what
        comes after."""
        self._closed = True
        await self.release()

    async def release(self) -> None:
        """Give the connection back for now (an open read transaction is rolled back): the
        next call takes one again, and checks the token again (a subscription lives longer
        than its token may)."""
        if self._connection is not None:
            connection, self._connection = self._connection, None
            self._user_known = False
            _forget_counter(connection)
            async with self._lock:
                with suppress(sa.exc.DBAPIError):  # a dead connection has nothing to give back
                    await self._database.run(connection.close)


async def _finished(work: asyncio.Future[Any]) -> None:
    """Wait until `work` is done, through further cancellations; drop its outcome."""
    while not work.done():
        with suppress(asyncio.CancelledError):
            await asyncio.wait([work])
    if not work.cancelled():
        work.exception()  # retrieved: nobody awaits this outcome any more


def _forget_counter(connection: Connection) -> None:
    """Detach the request's statement counter. An invalidated connection would reconnect to
    reach its `info` (and fail while the server is down); its pool entry clears `info` itself
    when it next connects."""
    if not connection.invalidated:
        connection.info.pop("statement_counter", None)


def scope_to_user(connection: Connection, user_id: str) -> None:
    """Bind the transaction to `user_id` for row-level security (PostgreSQL)."""
    if connection.dialect.name == "postgresql":
        sql.execute(connection, _SET_USER, {"user": user_id})


def check_token_user(
    connection: Connection, user_id: str, issued_at: datetime | None
) -> bool | None:
    """Bind the transaction to `user_id` (as `scope_to_user` does) and check the token, in one
    statement: None if the user does not exist, False if its tokens issued at `issued_at` were
    revoked (issued at or before its `tokens_valid_after`), True otherwise."""
    if connection.dialect.name != "postgresql":
        return token_status(connection, user_id, issued_at)
    rows = sql.execute(connection, _SET_USER_THEN_CUT_OFF, {"user": user_id, "issued": issued_at})
    accepted: bool | None = rows[0][0]
    return accepted


# Once per request, so on the driver's cursor, without Core's execution machinery. The setting
# (row-level security reads it) and the user check are one statement: one round trip on every
# driver (asyncpg's protocol takes one statement at a time). The check reads the user id from
# the setting's result, so it cannot run before the setting is made.
_SET_USER = "SELECT set_config('app.user_id', %(user)s, true)"
_SET_USER_THEN_CUT_OFF = (
    "WITH scope AS MATERIALIZED (SELECT set_config('app.user_id', %(user)s, true) AS id) "
    "SELECT (SELECT COALESCE(tokens_valid_after < %(issued)s, tokens_valid_after IS NULL) "
    "FROM users WHERE id = scope.id) FROM scope"
)


def allow_account_lookup(connection: Connection) -> None:
    """Open the users table to this transaction (sign-up, sign-in): there is no user yet."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("SELECT set_config('app.account_lookup', 'on', true)")


@contextmanager
def _write_transaction(connection: Connection) -> Iterator[None]:
    """A transaction that commits on success, writing the changes its writes noted to their
    users' change feeds just before (`graphql_api.changes.record`); on SQLite it takes the
    write lock up front."""
    connection.execution_options(sqlite_immediate=True)
    try:
        with connection.begin(), recording(connection):
            yield
    finally:
        connection.execution_options(sqlite_immediate=False)


def like_pattern(text: str) -> str:
    """The LIKE pattern of "contains `text`": its wildcards match only themselves."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def contains(column: sa.ColumnElement[Any], pattern: str) -> sa.ColumnElement[bool]:
    """`column` matches the parameter named `pattern` (a `like_pattern`), ignoring case."""
    return column.ilike(sa.bindparam(pattern), escape="\\")
