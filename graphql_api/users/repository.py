"""Users. Scoped functions take `user_id` and touch only that user's row; the public ones serve
sign-up, sign-in and provisioning, which happen before there is a user to scope to."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.exc import IntegrityError

from graphql_api.errors import BadUserInput, Conflict, NotFound
from graphql_api.models import EMAIL_MAX, USERS, UserFields, utcnow
from graphql_api.validation import changes_of, check_unchanged, validate

RESERVED_DOMAINS = ("invalid", "localhost", "test", "example")
"""Top-level domains that never receive mail (RFC 2606); `.invalid` holds our placeholders."""
PLACEHOLDER_DOMAIN = "users.invalid"
EXTERNAL_ID_PREFIX = "idp_"


def email_key(email: str) -> str:
    """The form every lookup and throttle key uses: trimmed and lower-cased."""
    return email.strip().lower()


def normalise_email(email: str) -> str:
    """The email of a new account: trimmed and lower-cased, so that addresses are unique
    ignoring case; BAD_USER_INPUT unless it looks deliverable."""
    email = email_key(email)
    local, _, domain = email.partition("@")
    if (
        not local
        or "." not in domain
        or len(email) > EMAIL_MAX
        or " " in email
        or domain.rsplit(".", 1)[-1] in RESERVED_DOMAINS
    ):
        raise BadUserInput("`email`: not a valid email address.", field="email")
    return email


def external_user_id(issuer: str, subject: str) -> str:
    """The user id of a provider identity: derived from (issuer, subject), so it never equals a
    built-in account's id (or another provider's), and needs no lookup to find."""
    digest = hashlib.sha256(json.dumps([issuer, subject]).encode()).hexdigest()
    return EXTERNAL_ID_PREFIX + digest


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


def credentials(conn: Connection, user_id: str) -> RowMapping:
    """The user's email and password hash (null for accounts without a password), locked
    until the transaction ends."""
    query = (
        sa.select(USERS.c.email, USERS.c.password_hash)
        .where(USERS.c.id == user_id)
        .with_for_update()
    )
    row = conn.execute(query).mappings().first()
    if row is None:
        raise NotFound("User")
    return row


def _revoke_tokens(user_id: str, now: datetime) -> sa.Update:
    """`tokens_valid_after` moved to `now`, never backwards (another replica's clock may be
    ahead: a cut-off it set stays)."""
    current = USERS.c.tokens_valid_after
    moment = sa.literal(now, type_=current.type)
    later = sa.case((sa.or_(current.is_(None), current < moment), moment), else_=current)
    return sa.update(USERS).where(USERS.c.id == user_id).values(tokens_valid_after=later)


def revoke_tokens(conn: Connection, user_id: str, now: datetime) -> datetime:
    """Every token issued at or before `now` stops working; returns the cut-off."""
    statement = _revoke_tokens(user_id, now).returning(USERS.c.tokens_valid_after)
    cutoff: datetime = conn.execute(statement).scalar_one()
    return cutoff


def change_password(
    conn: Connection, user_id: str, checked_hash: str, new_hash: str, now: datetime
) -> RowMapping:
    """Replace the password whose hash was checked, and revoke every token issued so far.
    CONFLICT if the password changed meanwhile (the check was against an older one)."""
    statement = (
        _revoke_tokens(user_id, now)
        .where(USERS.c.password_hash == checked_hash)
        .values(password_hash=new_hash, updated_at=now)
        .returning(USERS)
    )
    row = conn.execute(statement).mappings().first()
    if row is None:
        raise Conflict("Your password changed meanwhile: try again with the new one.")
    return row


def delete_user(conn: Connection, user_id: str) -> bool:
    """Remove the user; foreign keys cascade to everything they own, in this transaction."""
    return conn.execute(sa.delete(USERS).where(USERS.c.id == user_id)).rowcount == 1


# --- public: before there is a user ----------------------------------------------------------


def find_user_by_email(conn: Connection, email: str) -> RowMapping | None:
    """The built-in account of this email. Provisioned users are never found by email: theirs
    is unverified, and they sign in through their provider only."""
    query = sa.select(USERS).where(USERS.c.email == email, USERS.c.issuer.is_(None))
    return conn.execute(query).mappings().first()


def token_status(conn: Connection, user_id: str, issued_at: datetime | None) -> bool | None:
    """None if the user does not exist; False if a token issued at `issued_at` was revoked
    (at or before the user's `tokens_valid_after`); True otherwise. One statement. (On
    PostgreSQL, `graphql_api.db.check_token_user` sends the same check with the scope.)"""
    cutoff = USERS.c.tokens_valid_after
    accepted = (
        cutoff.is_(None) if issued_at is None else sa.or_(cutoff.is_(None), cutoff < issued_at)
    )
    row = conn.execute(sa.select(accepted).where(USERS.c.id == user_id)).first()
    return None if row is None else bool(row[0])


def provision_user(conn: Connection, issuer: str, subject: str, email: str | None) -> None:
    """Create the user of a provider identity, unless a concurrent request just did (race-safe).

    The token's email is shown, never trusted: it is unique nowhere and links to nothing, so an
    account that signed up with it can neither block nor capture this identity."""
    user_id = external_user_id(issuer, subject)
    email = email_key(email or "")
    if "@" not in email or len(email) > EMAIL_MAX:
        email = f"{user_id}@{PLACEHOLDER_DOMAIN}"
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    now = utcnow()
    statement = insert(USERS).values(
        id=user_id,
        email=email,
        name="",
        password_hash=None,
        issuer=issuer,
        subject=subject,
        created_at=now,
        updated_at=now,
    )
    # No conflict target: a concurrent first request may collide on the id or on (issuer,
    # subject), whichever unique index PostgreSQL checks first; both mean "already there".
    conn.execute(statement.on_conflict_do_nothing())


def create_user(
    conn: Connection,
    *,
    email: str,
    name: str = "",
    password_hash: str | None = None,
) -> RowMapping:
    """Insert a built-in account; CONFLICT if another built-in account has the email."""
    fields = validate(UserFields, {"name": name})
    email = normalise_email(email)
    now = utcnow()
    statement = (
        sa.insert(USERS)
        .values(
            id=str(uuid.uuid4()),
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
