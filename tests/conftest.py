"""Fixtures: a clean database per test on SQLite, and on PostgreSQL when TEST_DATABASE_URL is set.

Every test that takes `backend` (directly or through `api`) runs once per available database.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import SQLModel

from graphql_api.cli import migrate
from graphql_api.settings import Settings
from tests.helpers import Api, serve
from tests.tools import require_npm, require_test_database

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
BACKENDS = ["sqlite", *(["postgresql"] if TEST_DATABASE_URL else [])]
JWT_SECRET = "test-secret-" + "x" * 40
POSTGRESQL_ONLY = pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
"""For tests of what only PostgreSQL has (row-level security, its server's faults): without
TEST_DATABASE_URL they skip, saying so (and fail under CI)."""


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
    url = request.getfixturevalue("_postgresql_migrated")
    _truncate_all(url)
    app_url = sa.make_url(url).set(username=APP_ROLE, password=None)
    return Backend("postgresql", url, app_url.render_as_string(hide_password=False))


@pytest.fixture
def needs_npm() -> None:
    """For a test that runs Node.js tools: skipped (under CI: failed) without them."""
    require_npm()


@pytest.fixture
def settings(backend: Backend) -> Settings:
    return make_settings(backend.app_url)


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
