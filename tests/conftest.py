"""Fixtures: a clean database per test on SQLite, and on PostgreSQL when TEST_DATABASE_URL is set.

Every test that takes `backend` (directly or through `api`) runs once per available database;
in a module marked `THROUGH_POOLER`, once more with the API behind PgBouncer in transaction mode.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import SQLModel

from graphql_api.cli import migrate
from graphql_api.settings import Settings
from tests import pgbouncer
from tests.helpers import Api, serve
from tests.tools import require_npm, require_pgbouncer, require_test_database

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
BACKENDS = ["sqlite", *(["postgresql"] if TEST_DATABASE_URL else [])]
JWT_SECRET = "test-secret-" + "x" * 40
POSTGRESQL_ONLY = pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
"""For tests of what only PostgreSQL has (row-level security, its server's faults): without
TEST_DATABASE_URL they skip, saying so (and fail under CI)."""
THROUGH_POOLER = pytest.mark.through_pooler
"""For a module whose tests must also hold behind a transaction-mode pooler (Neon's): with
TEST_DATABASE_URL, each test that takes `backend` also runs on `pgbouncer`, the API reaching the
test database through a PgBouncer of the session's own (skipped without `pgbouncer`, failed
under CI)."""
PGBOUNCER_ONLY = pytest.mark.parametrize("backend", ["pgbouncer"], indirect=True)
"""For tests of the pooler itself."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "through_pooler: also run behind PgBouncer (conftest)")


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`THROUGH_POOLER` adds `pgbouncer` to the backends, as a parametrize mark (so it comes
    before, and replaces, the `backend` fixture's own parameters)."""
    marked = metafunc.definition.get_closest_marker("through_pooler") is not None
    if marked and TEST_DATABASE_URL and "backend" in metafunc.fixturenames:
        backends = [*BACKENDS, "pgbouncer"]
        metafunc.definition.add_marker(pytest.mark.parametrize("backend", backends, indirect=True))


def make_settings(database_url: str, **overrides: Any) -> Settings:
    """Settings for tests: cheap password hashing, a fixed secret, no `.env` file."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "jwt_secret": JWT_SECRET,
        "argon2_time_cost": 1,
        "argon2_memory_kib": 64,
        "log_level": "WARNING",
        "db_pool_size": 5,
        "db_max_overflow": 5,
        "sign_in_slowdown_seconds": 0.01,
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


APP_ROLE = "graphql_api_app"
"""On PostgreSQL the API under test connects as this ordinary role, so row-level security
applies to every request of the suite (superusers bypass it). Tests arrange and inspect rows
through `engine`, which connects as the owner."""


@dataclass
class Backend:
    name: str
    url: str  # the owner's connection: migrations, arranging and inspecting rows
    app_url: str  # the API's connection
    app_settings: dict[str, Any] = field(default_factory=dict)  # what the API needs there

    def settings(self, **overrides: Any) -> Settings:
        """The API's settings on this backend."""
        return make_settings(self.app_url, **{**self.app_settings, **overrides})


@contextmanager
def throwaway_postgresql_database(prefix: str) -> Iterator[str]:
    """An empty database of its own on TEST_DATABASE_URL's server, dropped afterwards."""
    assert TEST_DATABASE_URL
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    server = sa.create_engine(TEST_DATABASE_URL, isolation_level="AUTOCOMMIT")
    with server.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield (
            sa.make_url(TEST_DATABASE_URL).set(database=name).render_as_string(hide_password=False)
        )
    finally:
        with server.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        server.dispose()


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    migrate(make_settings(f"sqlite:///{path}"))
    return path


@pytest.fixture(scope="session")
def _postgresql_migrated() -> str:
    assert TEST_DATABASE_URL
    engine = sa.create_engine(TEST_DATABASE_URL)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    migrate(make_settings(TEST_DATABASE_URL))
    grant_app_role(TEST_DATABASE_URL)
    return TEST_DATABASE_URL


def grant_app_role(owner_url: str) -> str:
    """Let APP_ROLE use the migrated database at `owner_url`; its URL as APP_ROLE."""
    engine = sa.create_engine(owner_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        exists = conn.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": APP_ROLE})
        if not exists.first():
            conn.execute(sa.text(f"CREATE ROLE {APP_ROLE} LOGIN"))
        conn.execute(sa.text(f"GRANT USAGE ON SCHEMA public TO {APP_ROLE}"))
        conn.execute(
            sa.text(
                f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {APP_ROLE}"
            )
        )
    engine.dispose()
    app_url = sa.make_url(owner_url).set(username=APP_ROLE, password=None)
    return app_url.render_as_string(hide_password=False)


def _truncate_all(url: str) -> None:
    engine = sa.create_engine(url)
    tables = ", ".join(table.name for table in SQLModel.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {tables} CASCADE"))
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """A migrated, empty database."""
    if request.param == "sqlite":
        path = tmp_path / "test.db"
        shutil.copy(request.getfixturevalue("_sqlite_template"), path)
        return Backend("sqlite", f"sqlite:///{path}", f"sqlite:///{path}")
    require_test_database(TEST_DATABASE_URL)
    postgresql = emptied_postgresql(request.getfixturevalue("_postgresql_migrated"))
    if request.param == "pgbouncer":
        bouncer = request.getfixturevalue("_pgbouncer")
        # A transaction-mode pooler cannot LISTEN: live updates listen on the direct URL.
        pooled = {"database_pooler": "transaction", "database_listen_url": postgresql.app_url}
        return Backend("pgbouncer", postgresql.url, bouncer.url(postgresql.app_url), pooled)
    return postgresql


def emptied_postgresql(url: str) -> Backend:
    """The migrated PostgreSQL database, emptied; the API connects as APP_ROLE."""
    _truncate_all(url)
    app_url = sa.make_url(url).set(username=APP_ROLE, password=None)
    return Backend("postgresql", url, app_url.render_as_string(hide_password=False))


@pytest.fixture(scope="session")
def _pgbouncer() -> Iterator[pgbouncer.PgBouncer]:
    """PgBouncer in transaction mode in front of the test server, for the session; a pool of
    four server connections per role and database, so that clients share them."""
    require_pgbouncer()
    assert TEST_DATABASE_URL
    with pgbouncer.running(TEST_DATABASE_URL, ["postgres", APP_ROLE]) as bouncer:
        yield bouncer


@pytest.fixture
def needs_npm() -> None:
    """For a test that runs Node.js tools: skipped (under CI: failed) without them."""
    require_npm()


@pytest.fixture
def settings(backend: Backend) -> Settings:
    return backend.settings()


@pytest.fixture
def engine(backend: Backend) -> Iterator[sa.Engine]:
    """A plain engine on the test database, for arranging and inspecting rows directly."""
    from graphql_api.db import create_engine

    engine = create_engine(make_settings(backend.url))
    yield engine
    engine.dispose()


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    async with serve(settings) as running:
        yield running
