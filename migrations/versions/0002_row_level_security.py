"""Row-level security on PostgreSQL: a second line of defence behind the application's scoping.

Every owned table only shows and accepts rows whose `user_id` is the transaction-local setting
`app.user_id` (set at the start of each transaction with a bound parameter). The users table
also opens to `app.account_lookup = 'on'`, which the application sets only for sign-up, sign-in
and provisioning, before there is a user. FORCE makes the policies bind the tables' owner too;
superusers still bypass them, so the API should connect as an ordinary role (docs/security.md).
SQLite has no row-level security: there the application's scoping stands alone.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OWNED = ("tasks", "tags", "task_tags", "task_relationships", "conversations", "messages")
CURRENT_USER = "current_setting('app.user_id', true)"
ACCOUNT_LOOKUP = "current_setting('app.account_lookup', true) = 'on'"


def _policies() -> list[tuple[str, str]]:
    rule = f"id = {CURRENT_USER} OR {ACCOUNT_LOOKUP}"
    return [("users", rule)] + [(table, f"user_id = {CURRENT_USER}") for table in OWNED]


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, rule in _policies():
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY {table}_owner ON {table} USING ({rule}) WITH CHECK ({rule})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, _ in _policies():
        op.execute(f"DROP POLICY {table}_owner ON {table}")
        op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
