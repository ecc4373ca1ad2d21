"""Sign-in throttling, kept in the database so that every worker process shares it.

Failures are counted per email and per client address within a window. After the second
failure each further one answers more slowly; at the limit the email (or address) is refused
with RATE_LIMITED for a while. A successful sign-in clears its email's and address's counts.
Keys are hashed, so the table holds no email addresses of people who have no account.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from graphql_api.errors import RateLimited
from graphql_api.models import SIGN_IN_THROTTLES, utcnow
from graphql_api.settings import Settings

THROTTLES = SIGN_IN_THROTTLES


@dataclass(frozen=True)
class Subject:
    """What a failure counts against, and how many failures it may have."""

    key: str
    limit: int


def subjects(settings: Settings, email: str, address: str) -> list[Subject]:
    def hashed(kind: str, value: str) -> str:
        return hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()

    return [
        Subject(hashed("email", email), settings.sign_in_max_failures_per_email),
        Subject(hashed("address", address), settings.sign_in_max_failures_per_address),
    ]


def check_not_blocked(conn: Connection, keys: list[str]) -> None:
    """RATE_LIMITED if any of the keys is blocked now."""
    now = utcnow()
    query = sa.select(sa.func.max(THROTTLES.c.blocked_until)).where(
        THROTTLES.c.key.in_(keys), THROTTLES.c.blocked_until > now
    )
    blocked_until: datetime | None = conn.execute(query).scalar()
    if blocked_until is not None:
        retry_after = max(1, int((blocked_until - now).total_seconds()) + 1)
        raise RateLimited("Too many failed sign-ins: try again later.", retryAfter=retry_after)


def record_failure(conn: Connection, settings: Settings, subjects: list[Subject]) -> int:
    """Count a failure against every subject (atomically, across processes); block those at
    their limit. Returns the highest failure count, which sets the slowdown."""
    now = utcnow()
    window_start = now - timedelta(seconds=settings.sign_in_window_seconds)
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    highest = 0
    for subject in subjects:
        block = now + timedelta(seconds=settings.sign_in_block_seconds)
        upsert = insert(THROTTLES).values(
            key=subject.key,
            failures=1,
            window_started_at=now,
            blocked_until=block if subject.limit <= 1 else None,
        )
        expired = THROTTLES.c.window_started_at < window_start
        failures = sa.case((expired, 1), else_=THROTTLES.c.failures + 1)
        statement = upsert.on_conflict_do_update(
            index_elements=["key"],
            set_={
                "failures": failures,
                "window_started_at": sa.case((expired, now), else_=THROTTLES.c.window_started_at),
                "blocked_until": sa.case((failures >= subject.limit, block), else_=None),
            },
        ).returning(THROTTLES.c.failures)
        highest = max(highest, conn.execute(statement).scalar_one())
    return highest


def slowdown(settings: Settings, failures: int) -> float:
    """Seconds to hold a failed answer: none for the first two, then doubling, capped."""
    if failures <= 2:
        return 0.0
    return float(settings.sign_in_slowdown_seconds * min(2 ** (failures - 3), 8))


def clear(conn: Connection, subjects: list[Subject]) -> None:
    conn.execute(sa.delete(THROTTLES).where(THROTTLES.c.key.in_([s.key for s in subjects])))
