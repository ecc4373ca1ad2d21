"""Sign-in and sign-up throttling, kept in the database so that every worker process shares it.

Sign-in attempts are counted, before the password is checked, against three keys:

- the (email, client address) pair and the address: at their limits they are blocked for a while
  (RATE_LIMITED), which stops a guesser without touching the owner signing in elsewhere;
- the email alone: never blocked, or anyone knowing it could lock its owner out. Once it has
  failures, every attempt for it waits a growing, capped delay before its password is checked:
  successes too, so a fast answer cannot tell a parallel guesser it found the password.

Counting before checking makes the limits hold against parallel attempts (each one sees the
count of those before it). A success clears the pair and the email, and takes back its own count
from the address (so an address cannot wipe its failures by signing in to an account it owns).

Sign-ups are counted per address, before hashing; past the limit the address waits.
Keys are hashed, so the table holds no email addresses of people who have no account.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from graphql_api.errors import RateLimited
from graphql_api.models import SIGN_IN_THROTTLES, utcnow
from graphql_api.settings import Settings

THROTTLES = SIGN_IN_THROTTLES


@dataclass(frozen=True)
class Subject:
    """What an attempt counts against, and how many it may have (None: never blocked)."""

    key: str
    limit: int | None


@dataclass(frozen=True)
class Policy:
    window_seconds: int
    block_seconds: int
    message: str


@dataclass(frozen=True)
class SignIn:
    """The subjects of one sign-in attempt."""

    pair: Subject
    address: Subject
    email: Subject

    @property
    def subjects(self) -> list[Subject]:
        return [self.pair, self.address, self.email]


def _hashed(kind: str, value: str) -> str:
    return hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()


def sign_in(settings: Settings, email: str, address: str) -> SignIn:
    """`email` as normalised for lookups (`users.email_key`), so variants count as one."""
    return SignIn(
        pair=Subject(
            _hashed("email-address", f"{email}\n{address}"),
            settings.sign_in_max_failures_per_email_and_address,
        ),
        address=Subject(_hashed("address", address), settings.sign_in_max_failures_per_address),
        email=Subject(_hashed("email", email), None),
    )


def sign_in_policy(settings: Settings) -> Policy:
    return Policy(
        settings.sign_in_window_seconds,
        settings.sign_in_block_seconds,
        "Too many failed sign-ins: try again later.",
    )


def password_policy(settings: Settings) -> Policy:
    """Checks of a signed-in user's own password (changePassword, deleteMe): counted with the
    sign-ins of the account's email, under the same limits."""
    return Policy(
        settings.sign_in_window_seconds,
        settings.sign_in_block_seconds,
        "Too many wrong passwords: try again later.",
    )


def sign_up(settings: Settings, address: str) -> Subject:
    return Subject(_hashed("sign-up-address", address), settings.sign_up_max_per_address)


def sign_up_policy(settings: Settings) -> Policy:
    window = settings.sign_up_window_seconds
    return Policy(window, window, "Too many sign-ups from this address: try again later.")


def count_attempt(conn: Connection, policy: Policy, subjects: list[Subject]) -> list[int]:
    """Count an attempt against every subject (atomically, across processes) and return the
    counts, this one included. RATE_LIMITED, and nothing counted, if a subject is blocked or
    this attempt is past its limit (attempts racing in parallel); a subject that reaches its
    limit is blocked for `policy.block_seconds`."""
    now = utcnow()
    limited = [s.key for s in subjects if s.limit is not None]
    blocked = sa.select(sa.func.max(THROTTLES.c.blocked_until)).where(
        THROTTLES.c.key.in_(limited), THROTTLES.c.blocked_until > now
    )
    if (blocked_until := conn.execute(blocked).scalar()) is not None:
        _refuse(policy, (blocked_until - now).total_seconds())

    window_start = now - timedelta(seconds=policy.window_seconds)
    block = now + timedelta(seconds=policy.block_seconds)
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    counts = []
    for subject in subjects:
        limit = subject.limit if subject.limit is not None else 2**31 - 1  # never reached
        upsert = insert(THROTTLES).values(
            key=subject.key,
            failures=1,
            window_started_at=now,
            blocked_until=block if limit <= 1 else None,
        )
        expired = THROTTLES.c.window_started_at < window_start
        failures = sa.case((expired, 1), else_=THROTTLES.c.failures + 1)
        statement = upsert.on_conflict_do_update(
            index_elements=["key"],
            set_={
                "failures": failures,
                "window_started_at": sa.case((expired, now), else_=THROTTLES.c.window_started_at),
                "blocked_until": sa.case((failures >= limit, block), else_=None),
            },
        ).returning(THROTTLES.c.failures)
        count = conn.execute(statement).scalar_one()
        if count > limit:
            _refuse(policy, policy.block_seconds)  # rolls the counts of this attempt back
        counts.append(count)
    return counts


def _refuse(policy: Policy, seconds: float) -> None:
    raise RateLimited(policy.message, retryAfter=max(1, int(seconds) + 1))


def slowdown(settings: Settings, failures: int) -> float:
    """Seconds to wait before checking a password of an email with `failures` recent failures:
    none for the first two, then doubling, capped."""
    if failures <= 2:
        return 0.0
    return float(settings.sign_in_slowdown_seconds * min(2 ** (failures - 3), 8))


def succeeded(conn: Connection, attempt: SignIn) -> None:
    """The password was right: clear the pair and the email; the address keeps its failures
    but not this attempt's count."""
    conn.execute(
        sa.delete(THROTTLES).where(THROTTLES.c.key.in_([attempt.pair.key, attempt.email.key]))
    )
    conn.execute(
        sa.update(THROTTLES)
        .where(THROTTLES.c.key == attempt.address.key, THROTTLES.c.failures > 0)
        .values(failures=THROTTLES.c.failures - 1, blocked_until=None)
    )
