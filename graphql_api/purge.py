"""The operators' purge (`graphql-api purge --older-than DAYS`): trash older than DAYS, for
good, across all users, and change feed entries older than CHANGES_RETENTION_DAYS. A tool like
`seed` and `migrate`, never reached from a request.

It is the one place that acts for every user, and it does so one user at a time: it lists the
users' ids (the only unscoped read, opened the way sign-in opens the users table) and runs the
scoped `empty_trash`, then `forget_changes`, for each, in a transaction bound to that user, which
records what it deletes for good in the user's change feed as `emptyTrash` does. So row-level
security applies as it does to requests, and the purge works as the tables' owner (whom FORCE binds
too), as the API's own role, or as a superuser alike. Its cost grows with the number of users
(a few short statements each), not with the size of the tables.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from graphql_api.changes.record import recording
from graphql_api.changes.repository import forget_changes
from graphql_api.db import allow_account_lookup, create_engine, scope_to_user
from graphql_api.models import USERS, utcnow
from graphql_api.settings import Settings
from graphql_api.trash.repository import TrashCounts, empty_trash

USERS_PER_BATCH = 500


@dataclass(frozen=True)
class PurgeResult:
    trashed_before: datetime
    users: int  # users who had something purged
    counts: TrashCounts
    changes_before: datetime
    changes: int = 0  # change feed entries forgotten


def _user_ids(conn: Connection, batch: int) -> Iterator[str]:
    """Every user's id, in batches read in short transactions of their own."""
    after = ""
    while True:
        with conn.begin():
            allow_account_lookup(conn)
            ids = list(
                conn.execute(
                    sa.select(USERS.c.id)
                    .where(USERS.c.id > after)
                    .order_by(USERS.c.id)
                    .limit(batch)
                ).scalars()
            )
        yield from ids
        if len(ids) < batch:
            return
        after = ids[-1]


def purge_trash(
    settings: Settings, *, older_than: timedelta, batch: int = USERS_PER_BATCH
) -> PurgeResult:
    """Delete for good every user's tasks, tags and conversations trashed more than
    `older_than` ago, with what they leave behind (tag links, subtask links, messages: see
    `empty_trash`), and every user's change feed entries committed more than
    CHANGES_RETENTION_DAYS ago (see `forget_changes`). Each user's purge is one transaction; a
    failure stops the run, keeping the users done so far done (running it again carries on)."""
    now = utcnow()
    trashed_before = now - older_than
    changes_before = now - timedelta(days=settings.changes_retention_days)
    total = TrashCounts()
    users = forgotten = 0
    engine = create_engine(settings, request_limits=False)
    try:
        with engine.connect() as conn:
            conn.execution_options(sqlite_immediate=True)  # SQLite: take the write lock up front
            for user_id in _user_ids(conn, batch):
                with conn.begin(), recording(conn):
                    scope_to_user(conn, user_id)
                    # The user's rows first, the user's row last (`forget_changes` updates it,
                    # and so does the flush of `empty_trash`'s notes at the end of the block):
                    # the order every write takes them in, so a purge and a writer holding one
                    # of the trashed rows wait for each other in turn instead of deadlocking.
                    counts = empty_trash(conn, user_id, trashed_before=trashed_before)
                    forgotten += forget_changes(conn, user_id, before=changes_before).rows
                if counts.total:
                    users += 1
                    total += counts
    finally:
        engine.dispose()
    return PurgeResult(trashed_before, users, total, changes_before, forgotten)
