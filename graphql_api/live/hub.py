"""The process's fan-out of committed changes to its subscriptions.

On PostgreSQL, ONE connection per process LISTENs on the change feed's channel; the writing
transaction's `pg_notify` reaches every process at commit (and only then), carrying the user
and their last position. The hub hands it to that user's subscriptions in this process, which
then read their new changes from the feed themselves: the feed is the source of truth, a
notification only says "read". When the listening connection is lost, every subscription
reads once it is back (what was announced meanwhile is not lost: it is in the feed).

On SQLite there is no NOTIFY: the process announces its own writes (`committed`), so
subscriptions see the writes of the process they are connected to only.

A subscription keeps at most `queue_size` notifications waiting (one per commit of its user);
one that falls further behind is too slow, and `on_overflow` (closing its connection) runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable

import asyncpg  # type: ignore[import-untyped]
import sqlalchemy as sa

from graphql_api.changes.repository import CHANNEL
from graphql_api.errors import ServiceUnavailable

log = logging.getLogger(__name__)

UNKNOWN = sys.maxsize
"""A notification without a position ("something of this user's committed"): always read."""
RECONNECT_DELAYS = (0.1, 0.5, 1.0, 2.0, 5.0)
"""Seconds between attempts to get the listening connection back (the last one repeats)."""
CHECK_EVERY_SECONDS = 30.0
"""How often the listening connection is checked: a peer that vanished without closing the
socket (a network partition) would otherwise go unnoticed, and its notifications with it."""


class Subscriber:
    """One subscription's place in the hub: the notifications it has not taken yet."""

    def __init__(self, user_id: str, queue_size: int, on_overflow: Callable[[], None]) -> None:
        self.user_id = user_id
        self._queue: asyncio.Queue[int] = asyncio.Queue(maxsize=queue_size)
        self._on_overflow = on_overflow
        self.overflowed = False

    def announce(self, seq: int) -> None:
        if self.overflowed:
            return
        try:
            self._queue.put_nowait(seq)
        except asyncio.QueueFull:
            self.overflowed = True
            self._on_overflow()

    async def changed_after(self, position: int) -> None:
        """Wait for a notification of a change after `position`; older ones are dropped (the
        read they ask for was made)."""
        while await self._queue.get() <= position:
            pass

    def drain(self) -> None:
        """Drop the notifications waiting: the caller reads the feed right after."""
        while not self._queue.empty():
            self._queue.get_nowait()


class Hub:
    """The subscriptions of this process by user, and their connections' count per user."""

    def __init__(self, *, queue_size: int, listen_dsn: str | None, connect_timeout: float) -> None:
        self.queue_size = queue_size
        self._subscribers: dict[str, set[Subscriber]] = {}
        self._connections: dict[str, int] = {}
        self._listener = (
            None
            if listen_dsn is None
            else Listener(listen_dsn, self.announce, self.announce_all, connect_timeout)
        )

    @property
    def in_process(self) -> bool:
        """Without a database to listen to (SQLite), writes are announced by this process."""
        return self._listener is None

    # --- connections --------------------------------------------------------------------

    def admit(self, user_id: str, limit: int) -> bool:
        """Count a new connection of `user_id`, unless they hold `limit` already."""
        count = self._connections.get(user_id, 0)
        if count >= limit:
            return False
        self._connections[user_id] = count + 1
        return True

    def leave(self, user_id: str) -> None:
        count = self._connections.get(user_id, 0) - 1
        if count > 0:
            self._connections[user_id] = count
        else:
            self._connections.pop(user_id, None)

    # --- subscriptions ------------------------------------------------------------------

    async def subscribe(self, user_id: str, on_overflow: Callable[[], None]) -> Subscriber:
        """Register a subscription: from now on, every commit of `user_id` reaches it."""
        if self._listener is not None:
            await self._listener.started()  # a commit before LISTEN ran would go unheard
        subscriber = Subscriber(user_id, self.queue_size, on_overflow)
        self._subscribers.setdefault(user_id, set()).add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        subscribers = self._subscribers.get(subscriber.user_id)
        if subscribers is not None:
            subscribers.discard(subscriber)
            if not subscribers:
                del self._subscribers[subscriber.user_id]

    def announce(self, user_id: str, seq: int) -> None:
        """`user_id` committed changes up to position `seq`."""
        for subscriber in list(self._subscribers.get(user_id, ())):
            subscriber.announce(seq)

    def announce_all(self) -> None:
        """Every subscription reads once: notifications may have been missed."""
        for user_id in list(self._subscribers):
            self.announce(user_id, UNKNOWN)

    def committed(self, user_id: str) -> None:
        """This process committed a write of `user_id` (SQLite: no NOTIFY to do it)."""
        if self._listener is None:
            self.announce(user_id, UNKNOWN)

    @property
    def subscriptions(self) -> int:
        return sum(map(len, self._subscribers.values()))

    @property
    def connections(self) -> int:
        return sum(self._connections.values())

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.close()


def listen_dsn(database_url: str) -> str:
    """asyncpg's DSN for a SQLAlchemy PostgreSQL URL (any driver)."""
    url = sa.make_url(database_url).set(drivername="postgresql")
    # libpq only (Neon's URLs carry it): asyncpg would send it as a server setting.
    query = {name: value for name, value in url.query.items() if name != "channel_binding"}
    return url.set(query=query).render_as_string(hide_password=False)


class Listener:
    """One asyncpg connection LISTENing on the feed's channel, started on first use, and
    reconnected (with every subscription told to read) when lost."""

    def __init__(
        self,
        dsn: str,
        on_notification: Callable[[str, int], None],
        on_reconnect: Callable[[], None],
        connect_timeout: float,
    ) -> None:
        self._dsn = dsn
        self._on_notification = on_notification
        self._on_reconnect = on_reconnect
        self._connect_timeout = connect_timeout
        self._connection: asyncpg.Connection | None = None
        self._up = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def started(self) -> None:
        """Return once the connection LISTENs; SERVICE_UNAVAILABLE if it cannot meanwhile."""
        if self._up.is_set():
            return
        if self._task is None:
            self._task = asyncio.create_task(self._keep_listening())
        try:
            await asyncio.wait_for(self._up.wait(), self._connect_timeout)
        except TimeoutError:
            raise ServiceUnavailable("The database is unavailable: retry shortly.") from None

    async def _keep_listening(self) -> None:
        attempt = 0
        first = True
        while not self._closed:
            try:
                connection = await self._connect()
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                delay = RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)]
                log.warning("Cannot LISTEN for changes (%s); again in %.1f s", exc, delay)
                attempt += 1
                await asyncio.sleep(delay)
                continue
            attempt = 0
            if not first:
                self._on_reconnect()
            first = False
            self._up.set()
            await self._watch(connection)
            self._up.clear()

    async def _connect(self) -> asyncpg.Connection:
        connection = await asyncpg.connect(self._dsn, timeout=self._connect_timeout)
        try:
            await connection.add_listener(CHANNEL, self._notified)
        except BaseException:
            await connection.close(timeout=1)
            raise
        self._connection = connection
        return connection

    async def _watch(self, connection: asyncpg.Connection) -> None:
        """Return when the connection is lost (or the listener closed)."""
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _: lost.set())
        while not self._closed and not lost.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), CHECK_EVERY_SECONDS)
            if lost.is_set() or self._closed:
                break
            try:
                await connection.execute("SELECT 1", timeout=self._connect_timeout)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                break
        if not self._closed:
            log.warning("Lost the connection that LISTENs for changes; reconnecting")
        connection.terminate()
        self._connection = None

    def _notified(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        user_id, _, position = payload.rpartition(" ")
        try:
            seq = int(position)
        except ValueError:
            seq = UNKNOWN
        self._on_notification(user_id, seq)

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._connection is not None:
            self._connection.terminate()
            self._connection = None
