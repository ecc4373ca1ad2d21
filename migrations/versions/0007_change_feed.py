"""The change feed (issue 14): a gapless, per-user log of changed objects.

`users.change_seq` is the user's last position: the writing transaction advances it under the
user's row lock and writes one `changes` row per changed object, so positions run 1, 2, 3, ...
per user in commit order with no gap (a sequence shared by concurrent transactions would
commit out of order). `users.changes_kept_after` says up to which position the retention
purge has deleted. Row-level security on `changes` as on the other owned tables.

Downgrade: the feed and both counters go; clients' cursors no longer mean anything.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OWNER_RULE = "user_id = current_setting('app.user_id', true)"
KINDS = "'CREATED', 'UPDATED', 'DELETED', 'RESTORED'"
TYPES = "'Task', 'Tag', 'Conversation', 'Message'"


def upgrade() -> None:
    for column in ("change_seq", "changes_kept_after"):
        op.add_column(
            "users", sa.Column(column, sa.BigInteger(), server_default="0", nullable=False)
        )
    op.create_table(
        "changes",
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("object_id", sa.Uuid(), nullable=False),
        sa.Column("committed_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(f"kind IN ({KINDS})", name="ck_changes_kind_known"),
        sa.CheckConstraint(f"type IN ({TYPES})", name="ck_changes_type_known"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_changes_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", "seq", name="pk_changes"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE changes ENABLE ROW LEVEL SECURITY")
        op.execute("ALTER TABLE changes FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY changes_owner ON changes USING ({OWNER_RULE}) WITH CHECK ({OWNER_RULE})"
        )


def downgrade() -> None:
    op.drop_table("changes")  # its policy goes with it
    # Plain DROP COLUMN, on SQLite too: a batch rebuild of `users` would cascade its drop.
    op.drop_column("users", "changes_kept_after")
    op.drop_column("users", "change_seq")
