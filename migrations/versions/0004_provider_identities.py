"""Provider identities keyed by (issuer, subject); emails unique among built-in accounts only.

Emails are never verified, so a built-in account's email must not block or capture the
identity provider's users: provisioned users now carry their `issuer` and `subject` (their id
is derived from the pair, see `graphql_api.users.repository.external_user_id`), and the unique
email index covers built-in accounts (`issuer IS NULL`) only.

Users provisioned before this revision (id = the raw `sub`) are left as they are: they become
password-less built-in accounts that no token of the provider reaches any more (its tokens now
map to the derived ids), so they can neither be captured nor capture anyone.

Downgrade: the global unique email constraint comes back; a provisioned user whose email is
also another account's gets the `<id>@users.invalid` placeholder first, so it can be created.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BUILT_IN = "issuer IS NULL"
EXTERNAL_IDENTITY = (
    "(issuer IS NULL AND subject IS NULL) OR "
    "(issuer IS NOT NULL AND subject IS NOT NULL AND password_hash IS NULL)"
)


@contextmanager
def _users_rebuilt_safely() -> Iterator[None]:
    """SQLite changes a constraint by copying the table and dropping the old one; with foreign
    keys on, that drop would cascade to every row the users own. So they go off meanwhile."""
    if op.get_bind().dialect.name != "sqlite":
        yield
        return
    _sqlite_foreign_keys("OFF")
    try:
        yield
    finally:
        _sqlite_foreign_keys("ON")


def _sqlite_foreign_keys(state: str) -> None:
    # SQLite ignores the pragma inside a transaction, so end this migration's transaction and
    # start a new one around it. Straight to the driver: through SQLAlchemy, the engine's
    # "begin" hook would open a transaction around the pragma again.
    driver = op.get_bind().connection.driver_connection
    driver.execute("COMMIT")
    driver.execute(f"PRAGMA foreign_keys = {state}")
    driver.execute("BEGIN")


def upgrade() -> None:
    with _users_rebuilt_safely():
        with op.batch_alter_table("users") as batch:
            batch.add_column(sa.Column("issuer", sa.String(255), nullable=True))
            batch.add_column(sa.Column("subject", sa.String(255), nullable=True))
            batch.drop_constraint(op.f("uq_users_email"), type_="unique")
            batch.create_unique_constraint(op.f("uq_users_issuer_subject"), ["issuer", "subject"])
            batch.create_check_constraint(op.f("ck_users_external_identity"), EXTERNAL_IDENTITY)
        op.create_index(
            "uq_users_email_built_in",
            "users",
            ["email"],
            unique=True,
            postgresql_where=sa.text(BUILT_IN),
            sqlite_where=sa.text(BUILT_IN),
        )


def downgrade() -> None:
    op.execute(
        "UPDATE users SET email = id || '@users.invalid' WHERE issuer IS NOT NULL AND EXISTS "
        "(SELECT 1 FROM users AS other WHERE other.email = users.email AND other.id <> users.id "
        "AND (other.issuer IS NULL OR other.id < users.id))"
    )
    op.drop_index("uq_users_email_built_in", table_name="users")
    with _users_rebuilt_safely(), op.batch_alter_table("users") as batch:
        batch.drop_constraint(op.f("ck_users_external_identity"), type_="check")
        batch.drop_constraint(op.f("uq_users_issuer_subject"), type_="unique")
        batch.create_unique_constraint(op.f("uq_users_email"), ["email"])
        batch.drop_column("subject")
        batch.drop_column("issuer")
