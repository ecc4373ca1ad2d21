"""Writing the change feed: the data layer notes what it changes, the write transaction
records it once, just before it commits.

A write function calls `note(conn, user_id, kind, type, id)` for each object it changes; the
notes wait on the connection. `recording(conn)` (the API's write transactions, the purge, the
demo seed) flushes them as its last statement(s): it advances the user's `change_seq` by the
number of changed objects under the user's row lock (`UPDATE ... RETURNING`), writes one
`changes` row per object, and on PostgreSQL sends `pg_notify` in the same transaction, so
listeners hear of committed changes only. On PostgreSQL that is one statement.

Why this is gapless and in commit order: the row lock is held from the flush to the commit, so
a second writer of the same user waits, then reads the counter the first one committed. A
transaction that rolls back (before or after its flush) leaves no row and no position used.
Taking the lock last keeps it held for the shortest time: only the commit runs after it.

Coalescing: one row per object per transaction. A later UPDATED adds nothing to an earlier
kind (created then updated is CREATED, restored then updated RESTORED); otherwise the later
kind wins (created then deleted in one mutation is DELETED: the id was used, and is gone).
An object keeps the place of its first note.

Outside `recording`, `note` does nothing: tests arranging data directly, and the bulk seed of
the benchmark, write no feed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from graphql_api import sql
from graphql_api.changes.repository import CHANNEL
from graphql_api.models import CHANGES, USERS, utcnow

Kind = Literal["CREATED", "UPDATED", "DELETED", "RESTORED"]
TypeName = Literal["Task", "Tag", "Conversation", "Message"]

_PENDING = "pending_changes"  # key in `Connection.info` while a recording transaction runs


class Pending:
    """The changes of one transaction not yet written, per user, coalesced by object."""

    def __init__(self) -> None:
        self.by_user: dict[str, dict[tuple[str, uuid.UUID], str]] = {}

    def add(self, user_id: str, kind: Kind, type_name: TypeName, object_id: uuid.UUID) -> None:
        changes = self.by_user.setdefault(user_id, {})
        key = (type_name, object_id)
        earlier = changes.get(key)
        changes[key] = kind if earlier is None or kind != "UPDATED" else earlier


def note(
    conn: Connection,
    user_id: str,
    kind: Kind,
    type_name: TypeName,
    object_ids: uuid.UUID | list[uuid.UUID],
) -> None:
    """Record that the user's object(s) changed in this transaction (written at its end)."""
    pending: Pending | None = conn.info.get(_PENDING)
    if pending is None:
        return
    for object_id in object_ids if isinstance(object_ids, list) else [object_ids]:
        pending.add(user_id, kind, type_name, object_id)


@contextmanager
def recording(conn: Connection) -> Iterator[Pending]:
    """Collect the notes of the transaction this block runs in, and write them at the end of
    the block when it succeeds (so: enter it inside the transaction, right after `begin`).
    Nested blocks share the outermost one's notes."""
    outer: Pending | None = conn.info.get(_PENDING)
    if outer is not None:
        yield outer
        return
    pending = Pending()
    conn.info[_PENDING] = pending
    try:
        yield pending
        for user_id, changes in pending.by_user.items():
            if changes:
                write_changes(conn, user_id, changes)
    finally:
        if not conn.invalidated:  # an invalidated connection has no `info` to clean
            conn.info.pop(_PENDING, None)


def write_changes(conn: Connection, user_id: str, changes: dict[tuple[str, uuid.UUID], str]) -> int:
    """Append `changes` to the user's feed under their row lock; the last position."""
    if conn.dialect.name == "postgresql":
        return _write_postgresql(conn, user_id, changes)
    return _write_portable(conn, user_id, changes)


# One round trip: the counter (and with it the row lock), the rows, the notification. The rows'
# positions are the counter's new value minus the count plus their ordinal.
_WRITE_POSTGRESQL = (
    "WITH advanced AS ("
    " UPDATE users SET change_seq = change_seq + %(count)s WHERE id = %(user)s"
    " RETURNING change_seq"
    "), written AS ("
    " INSERT INTO changes (user_id, seq, kind, type, object_id, committed_at)"
    " SELECT %(user)s, advanced.change_seq - %(count)s + item.ordinal, item.kind, item.type,"
    " item.id, clock_timestamp()"
    " FROM advanced, unnest(%(kinds)s::text[], %(types)s::text[], %(ids)s::uuid[])"
    " WITH ORDINALITY AS item(kind, type, id, ordinal)"
    ") "
    "SELECT change_seq, pg_notify(%(channel)s, %(user)s || ' ' || change_seq) FROM advanced"
)


def _write_postgresql(
    conn: Connection, user_id: str, changes: dict[tuple[str, uuid.UUID], str]
) -> int:
    params = {
        "user": user_id,
        "channel": CHANNEL,
        "count": len(changes),
        "kinds": list(changes.values()),
        "types": [type_name for type_name, _ in changes],
        "ids": [str(object_id) for _, object_id in changes],
    }
    rows = sql.execute(conn, _WRITE_POSTGRESQL, params)
    if not rows:
        raise LookupError(f"no user {user_id!r} to record changes for")
    last: int = rows[0][0]
    return last


def _write_portable(
    conn: Connection, user_id: str, changes: dict[tuple[str, uuid.UUID], str]
) -> int:
    """SQLite (one writer at a time: the transaction holds the write lock from its start)."""
    advanced = (
        sa.update(USERS)
        .where(USERS.c.id == user_id)
        # `updated_at` as it is: the account did not change (the column's onupdate would).
        .values(change_seq=USERS.c.change_seq + len(changes), updated_at=USERS.c.updated_at)
        .returning(USERS.c.change_seq)
    )
    last: int = conn.execute(advanced).scalar_one()
    now = utcnow()
    first = last - len(changes) + 1
    conn.execute(
        sa.insert(CHANGES),
        [
            {
                "user_id": user_id,
                "seq": first + index,
                "kind": kind,
                "type": type_name,
                "object_id": object_id,
                "committed_at": now,
            }
            for index, ((type_name, object_id), kind) in enumerate(changes.items())
        ],
    )
    return last
