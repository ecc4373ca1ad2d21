"""The seeded PostgreSQL database of the in-process benchmarks (`cpu.py`, `cpu_data.py`)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432"
APP_ROLE = "bench_app"
"""The ordinary role the API connects as, so that row-level security applies."""


def prepare(url: str, users: int, secret: str) -> list[str]:
    """Create, migrate and seed the database if needed (as its owner), let APP_ROLE use it;
    the users' ids. Imports the project lazily: `cpu_data.py`'s workers import other
    checkouts of it."""
    sys.path.insert(0, str(ROOT))
    import sqlalchemy as sa

    from graphql_api.cli import migrate
    from graphql_api.seed import seed_bulk
    from graphql_api.settings import Settings

    name = sa.make_url(url).database
    server = sa.create_engine(f"{SERVER}/postgres", isolation_level="AUTOCOMMIT")
    with server.connect() as conn:
        exists = sa.text("SELECT 1 FROM pg_database WHERE datname = :n")
        if not conn.execute(exists, {"n": name}).first():
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    server.dispose()
    settings = Settings(_env_file=None, database_url=url, jwt_secret=secret)  # type: ignore[call-arg]
    migrate(settings)
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        if not conn.execute(sa.text("SELECT count(*) FROM users")).scalar_one():
            seed_bulk(settings, users=users, tasks=100)
            conn.execute(sa.text("VACUUM ANALYZE"))
        role = sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r")
        if not conn.execute(role, {"r": APP_ROLE}).first():
            conn.execute(sa.text(f"CREATE ROLE {APP_ROLE} LOGIN"))
        conn.execute(sa.text(f"GRANT USAGE ON SCHEMA public TO {APP_ROLE}"))
        conn.execute(
            sa.text(
                f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {APP_ROLE}"
            )
        )
        ids = [row[0] for row in conn.execute(sa.text("SELECT id FROM users ORDER BY email"))]
    engine.dispose()
    return ids
