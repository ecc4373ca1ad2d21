"""Revision 0004 (provider identities) on a database that has data: SQLite rebuilds the users
table to change its constraints, which must not cascade to what the users own; the downgrade
brings back one unique email per row."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command

from tests.test_migrations import alembic_config, empty_database

__all__ = ["empty_database"]  # the fixture, shared with test_migrations

NOW = "2026-12-01 10:00:00+00:00"


def _tasks(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM tasks")).scalar_one())


def test_upgrade_and_downgrade_keep_what_users_own(empty_database: str) -> None:
    config = alembic_config(empty_database)
    command.upgrade(config, "0003")
    engine = sa.create_engine(empty_database)
    with engine.begin() as conn:
        for user_id in ("built-in-1", "legacy-provider-sub"):
            conn.execute(
                sa.text(
                    "INSERT INTO users (id, email, name, created_at, updated_at)"
                    " VALUES (:id, :email, '', :now, :now)"
                ),
                {"id": user_id, "email": f"{user_id}@example.com", "now": NOW},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO tasks (user_id, id, title, completed, priority, created_at,"
                    " updated_at) VALUES (:id, :task, 't', false, 'low', :now, :now)"
                ),
                {"id": user_id, "task": f"{len(user_id):032x}", "now": NOW},
            )

    command.upgrade(config, "head")
    assert _tasks(engine) == 2
    with engine.begin() as conn:  # a provider user with a built-in account's email: allowed
        conn.execute(
            sa.text(
                "INSERT INTO users (id, email, name, created_at, updated_at, issuer, subject)"
                " VALUES ('idp_x', 'built-in-1@example.com', '', :now, :now, 'iss', 'sub')"
            ),
            {"now": NOW},
        )

    command.downgrade(config, "0003")
    assert _tasks(engine) == 2
    with engine.connect() as conn:
        emails = {row.id: row.email for row in conn.execute(sa.text("SELECT id, email FROM users"))}
    assert emails == {
        "built-in-1": "built-in-1@example.com",
        "legacy-provider-sub": "legacy-provider-sub@example.com",
        "idp_x": "idp_x@users.invalid",
    }
    command.upgrade(config, "head")
    assert _tasks(engine) == 2
    engine.dispose()
