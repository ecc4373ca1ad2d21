"""Idempotent creates: a retried create mutation with the same `Idempotency-Key` returns the row
the first attempt created, and creates nothing twice.

The key is recorded in the same transaction as the row it created, so either both exist or
neither does. Keys are per user and per mutation field (its alias, if any), honoured for at
least 24 hours and forgotten after 48.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.exc import IntegrityError

from graphql_api.errors import BadUserInput, Conflict, NotFound
from graphql_api.models import IDEMPOTENCY_KEYS, utcnow
from graphql_api.sql import AnyRow

KEEP_FOR = timedelta(hours=48)
MAX_KEY_LENGTH = 255
HEADER = "Idempotency-Key"

KEYS = IDEMPOTENCY_KEYS
Fetch = Callable[[Connection, str, Iterable[uuid.UUID]], Mapping[Any, AnyRow]]


def checked_key(key: str) -> str:
    if not 0 < len(key) <= MAX_KEY_LENGTH or not key.isprintable():
        raise BadUserInput(
            f"`{HEADER}` must be 1 to {MAX_KEY_LENGTH} printable characters.", field=HEADER
        )
    return key


def fingerprint(*parts: Any) -> str:
    """A stable digest of a mutation's input, to tell a retry from a different request."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def create_once(
    conn: Connection,
    user_id: str,
    key: str,
    field: str,
    digest: str,
    create: Callable[..., RowMapping],
    fetch: Fetch,
    *args: Any,
    **kwargs: Any,
) -> AnyRow:
    """`create(conn, user_id, *args, **kwargs)`, unless this key already created a row."""
    query = sa.select(KEYS.c.fingerprint, KEYS.c.result_id).where(
        KEYS.c.user_id == user_id, KEYS.c.key == key, KEYS.c.field == field
    )
    earlier = conn.execute(query).first()
    if earlier is not None:
        if earlier.fingerprint != digest:
            raise Conflict(f"This `{HEADER}` was used for a different request.", field=HEADER)
        row = fetch(conn, user_id, [earlier.result_id]).get(earlier.result_id)
        if row is None:
            raise NotFound("The result of the first request")
        return row
    created = create(conn, user_id, *args, **kwargs)
    now = utcnow()
    try:
        conn.execute(
            sa.insert(KEYS).values(
                user_id=user_id,
                key=key,
                field=field,
                fingerprint=digest,
                result_id=created["id"],
                created_at=now,
            )
        )
    except IntegrityError as exc:  # the same key, in flight in another request right now
        raise Conflict(
            f"A request with this `{HEADER}` is in progress: retry in a moment.", field=HEADER
        ) from exc
    conn.execute(
        sa.delete(KEYS).where(KEYS.c.user_id == user_id, KEYS.c.created_at < now - KEEP_FOR)
    )
    return created
