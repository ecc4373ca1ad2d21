"""The shared store of Apollo's automatic persisted queries: documents by their SHA-256.

Every worker and replica registers and finds documents here (each keeps a small in-process
cache in front of it). The rows belong to no user, so the table has no `user_id` and no
row-level security; the API's role needs SELECT, INSERT and DELETE on it (re-run the GRANT of
docs/security.md after this revision on an existing deployment).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-09
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "persisted_documents",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name="pk_persisted_documents"),
    )
    op.create_index(
        "ix_persisted_documents_created_at", "persisted_documents", ["created_at"]
    )


def downgrade() -> None:
    op.drop_table("persisted_documents")  # its index goes with it
