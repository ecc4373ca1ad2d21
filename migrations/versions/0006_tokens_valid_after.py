"""A per-user cut-off for tokens: `users.tokens_valid_after`.

`changePassword` and `signOutEverywhere` set it; a token issued at or before it no longer works.
The statement that already checks, once per request, that the token's user exists compares the
token's issue time with it, so revocation costs no extra round trip. Null means no cut-off, so
existing accounts and their tokens are unaffected. A plain nullable column: SQLite adds and
drops it in place, without copying the users table.

Downgrade: the column goes, and with it every cut-off (revoked tokens that have not expired
work again until they do).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-16
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "users", sa.Column("tokens_valid_after", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("users", "tokens_valid_after")
