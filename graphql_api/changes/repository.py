"""Reading the change feed, and its retention: functions of the connection and the owner's
`user_id`, like the rest of the data layer. (Writing it: `graphql_api.changes.record`.)

Positions are gapless per user (1, 2, 3, ...), so the page after `since` is exactly the
positions `since + 1 .. since + limit`: a range on the primary key, read in the same statement
as the user's counters, so a page and its `hasMore` come from one snapshot.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from graphql_api.errors import CursorExpired
from graphql_api.models import CHANGES, USERS
from graphql_api.sql import Record, Statement

CHANNEL = "changes"
"""The PostgreSQL NOTIFY channel of committed changes; the payload is `notify_payload(...)`."""


def notify_payload(user_id: str, seq: int) -> str:
    """What a NOTIFY on `CHANNEL` carries: the user and their last position, after commit."""
    return f"{user_id} {seq}"


class ChangeRecord(NamedTuple):
    """One change in a user's feed."""

    seq: int
    kind: str  # CREATED | UPDATED | DELETED | RESTORED
    type: str  # Task | Tag | Conversation | Message
    object_id: uuid.UUID
    committed_at: datetime


@dataclass(frozen=True)
class FeedPage:
    """Changes after `since`, and the user's last position when they were read."""

    records: list[ChangeRecord]
    since: int
    last_seq: int

    @property
    def end(self) -> int:
        """The position to continue after."""
        return self.records[-1].seq if self.records else self.since

    @property
    def has_more(self) -> bool:
        return self.last_seq > self.end


def _page(since: sa.ColumnElement[int]) -> Statement:
    """The user's counters, with their changes in `(since, since + limit]` (none: one row of
    NULLs, by the outer join)."""
    window = sa.and_(
        CHANGES.c.user_id == USERS.c.id,
        CHANGES.c.seq > since,
        CHANGES.c.seq <= since + sa.bindparam("limit", type_=sa.BigInteger),
    )
    return Statement(
        lambda: (
            sa.select(
                USERS.c.changes_kept_after,
                USERS.c.change_seq,
                CHANGES.c.seq,
                CHANGES.c.kind,
                CHANGES.c.type,
                CHANGES.c.object_id,
                CHANGES.c.committed_at,
            )
            .select_from(USERS.outerjoin(CHANGES, window))
            .where(USERS.c.id == sa.bindparam("user_id"))
            .order_by(CHANGES.c.seq)
        )
    )


_PAGE_AFTER = _page(sa.bindparam("since", type_=sa.BigInteger))
_PAGE_FROM_START = _page(USERS.c.changes_kept_after)


def change_page(conn: Connection, user_id: str, since: int | None, limit: int) -> FeedPage:
    """At most `limit` changes after position `since` (None: after what retention purged),
    oldest first. CURSOR_EXPIRED when `since` was purged, or is past the end of the feed
    (a cursor of another feed, or of a database restored from an older backup)."""
    if since is None:
        rows = _PAGE_FROM_START.run(conn, user_id=user_id, limit=limit)
    else:
        rows = _PAGE_AFTER.run(conn, user_id=user_id, since=since, limit=limit)
    if not rows:  # the user is gone (deleted by another request meanwhile)
        return FeedPage([], since or 0, since or 0)
    kept_after, last = rows[0][0], rows[0][1]
    start = kept_after if since is None else since
    if start < kept_after:
        raise CursorExpired(
            "Changes after this cursor are no longer kept: refetch what you show, then "
            "continue from the cursor `changes` answers now."
        )
    if start > last:
        raise CursorExpired(
            "This cursor is not a position of your change feed: refetch what you show, then "
            "continue from the cursor `changes` answers now."
        )
    return FeedPage([_record(row) for row in rows if row[2] is not None], start, last)


def _record(row: Record) -> ChangeRecord:
    return ChangeRecord(row[2], row[3], row[4], row[5], row[6])


def changes_after(conn: Connection, user_id: str, since: int, limit: int) -> list[ChangeRecord]:
    """At most `limit` changes after position `since`, ascending; CURSOR_EXPIRED as
    `change_page` says."""
    return change_page(conn, user_id, since, limit).records


def last_seq(conn: Connection, user_id: str) -> int:
    """The position of the user's latest change (0: none yet)."""
    query = sa.select(USERS.c.change_seq).where(USERS.c.id == user_id)
    seq: int | None = conn.execute(query).scalar_one_or_none()
    return seq or 0


@dataclass(frozen=True)
class Forgotten:
    """What `forget_changes` deleted: how many rows, and the user's new `changes_kept_after`."""

    rows: int
    kept_after: int


def forget_changes(conn: Connection, user_id: str, *, before: datetime) -> Forgotten:
    """Delete the user's changes committed before `before` (retention). Everything up to the
    newest such position goes, so the feed stays a gapless range after `changes_kept_after`,
    and a cursor before it answers CURSOR_EXPIRED."""
    newest_old = sa.select(sa.func.max(CHANGES.c.seq)).where(
        CHANGES.c.user_id == user_id, CHANGES.c.committed_at < before
    )
    cut: int | None = conn.execute(newest_old).scalar_one()
    if cut is None:
        return Forgotten(0, 0)
    deleted = conn.execute(
        sa.delete(CHANGES).where(CHANGES.c.user_id == user_id, CHANGES.c.seq <= cut)
    ).rowcount
    conn.execute(
        sa.update(USERS)
        .where(USERS.c.id == user_id, USERS.c.changes_kept_after < cut)
        .values(changes_kept_after=cut, updated_at=USERS.c.updated_at)  # not the account's change
    )
    return Forgotten(deleted, cut)
