"""Users. Scoped functions take `user_id` and touch only that user's row; the public ones serve
sign-up, sign-in and provisioning, which happen before there is a user to scope to."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.exc import IntegrityError

from graphql_api.errors import BadUserInput, Conflict, NotFound, Unauthenticated
from graphql_api.models import EMAIL_MAX, USERS, UserFields, utcnow
from graphql_api.validation import changes_of, check_unchanged, validate


def normalise_email(email: str) -> str:
    """Trimmed and lower-cased, so that addresses are unique ignoring case."""
    email = email.strip().lower()
    local, _, domain = email.partition("@")
    if not local or "." not in domain or len(email) > EMAIL_MAX or " " in email:
        raise BadUserInput("`email`: not a valid email address.", field="email")
    return email


# --- scoped ----------------------------------------------------------------------------------


def get_user(conn: Connection, user_id: str) -> RowMapping:
    row = conn.execute(sa.select(USERS).where(USERS.c.id == user_id)).mappings().first()
    if row is None:
        raise NotFound("User")
    return row


def update_user(
    conn: Connection,
    user_id: str,
    changes: dict[str, Any],
    expected_updated_at: datetime | None = None,
) -> RowMapping:
    current = (
        conn.execute(sa.select(USERS).where(USERS.c.id == user_id).with_for_update())
        .mappings()
        .one()
    )
    check_unchanged(current, expected_updated_at)
    values = changes_of(UserFields, dict(current), changes)
    if not values:
        return current
    return (
        conn.execute(
            sa.update(USERS)
            .where(USERS.c.id == user_id)
            .values(**values, updated_at=utcnow())
            .returning(USERS)
        )
        .mappings()
        .one()
    )


def delete_user(conn: Connection, user_id: str) -> bool:
    """Remove the user; foreign keys cascade to everything they own, in this transaction."""
    return conn.execute(sa.delete(USERS).where(USERS.c.id == user_id)).rowcount == 1


# --- public: before there is a user ----------------------------------------------------------


def find_user_by_email(conn: Connection, email: str) -> RowMapping | None:
    query = sa.select(USERS).where(USERS.c.email == email)
    return conn.execute(query).mappings().first()


def user_exists(conn: Connection, user_id: str) -> bool:
    query = sa.select(USERS.c.id).where(USERS.c.id == user_id)
    return conn.execute(query).first() is not None


def provision_user(conn: Connection, user_id: str, email: str | None) -> None:
    """Create the user of an external token, unless a concurrent request just did (race-safe)."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    now = utcnow()
    statement = insert(USERS).values(
        id=user_id,
        email=(email or f"{user_id}@users.invalid").strip().lower(),
        name="",
        password_hash=None,
        created_at=now,
        updated_at=now,
    )
    try:
        conn.execute(statement.on_conflict_do_nothing(index_elements=["id"]))
    except sa.exc.IntegrityError as exc:
        raise Unauthenticated(
            "This identity's email belongs to another account: sign in with that account."
        ) from exc


def create_user(
    conn: Connection,
    *,
    email: str,
    name: str = "",
    password_hash: str | None = None,
    user_id: str | None = None,
) -> RowMapping:
    """Insert a user; CONFLICT if the email is taken."""
    fields = validate(UserFields, {"name": name})
    email = normalise_email(email)
    now = utcnow()
    statement = (
        sa.insert(USERS)
        .values(
            id=user_id or str(uuid.uuid4()),
            email=email,
            name=fields.name,
            password_hash=password_hash,
            created_at=now,
            updated_at=now,
        )
        .returning(USERS)
    )
    if find_user_by_email(conn, email) is not None:
        raise Conflict("An account with this email exists already.", field="email")
    try:
        return conn.execute(statement).mappings().one()
    except IntegrityError as exc:
        raise Conflict("An account with this email exists already.", field="email") from exc
