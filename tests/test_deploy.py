"""Migrations at deploy: `graphql-api migrate` runs one at a time, and in production `serve`
never migrates: it starts only on a database at the code's head revision."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from sqlmodel import SQLModel

from graphql_api.migration import MIGRATION_LOCK_KEY, alembic_config, migrate
from tests.conftest import APP_ROLE, BACKENDS, Backend, make_settings, throwaway_postgresql_database
from tests.live import CLI, cli_environment, free_port, serve_process, sign_up
from tests.test_migrations import table_names

SCRIPT = ScriptDirectory.from_config(alembic_config("sqlite://"))
HEAD = SCRIPT.get_current_head()
assert HEAD is not None
_previous = SCRIPT.get_revision(HEAD).down_revision
assert isinstance(_previous, str)
PREVIOUS: str = _previous
TABLES = {table.name for table in SQLModel.metadata.sorted_tables}
needs_postgresql = pytest.mark.skipif("postgresql" not in BACKENDS, reason="TEST_DATABASE_URL")


@pytest.fixture(params=BACKENDS)
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of its own with no tables at all, owned by the URL's user."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/deploy.db"
        return
    with throwaway_postgresql_database("deploy") as url:
        yield url


def revisions(url: str) -> list[str]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
    engine.dispose()
    return list(rows)


def serve_in_production(database_url: str) -> subprocess.CompletedProcess[str]:
    """`graphql-api serve` in production until it exits (it must refuse to start)."""
    return subprocess.run(
        [*CLI, "serve", "--port", str(free_port())],
        env=cli_environment(DATABASE_URL=database_url, ENVIRONMENT="production"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def wait_until(
    condition: Callable[[], bool], what: str, processes: list[subprocess.Popen[str]]
) -> None:
    for _ in range(600):
        if condition():
            return
        if any(process.poll() is not None for process in processes):
            break
        time.sleep(0.1)
    raise AssertionError(f"never: {what}")


WAITING_FOR_THE_MIGRATION_LOCK = sa.text(
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " AND classid::bigint = :high AND objid::bigint = :low AND objsubid = 1"
)


@needs_postgresql
def test_concurrent_migrate_runs_wait_for_each_other_and_migrate_once() -> None:
    with throwaway_postgresql_database("deploy") as url:
        holder = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        with holder.connect() as conn:
            # given: the lock held, so that both runs are surely under way at once
            conn.execute(sa.select(sa.func.pg_advisory_lock(MIGRATION_LOCK_KEY)))
            runs = [
                subprocess.Popen(
                    [*CLI, "migrate"],
                    env=cli_environment(DATABASE_URL=url),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for _ in range(2)
            ]
            try:
                lock = {"high": MIGRATION_LOCK_KEY >> 32, "low": MIGRATION_LOCK_KEY & 0xFFFFFFFF}
                waiting = lambda: conn.execute(WAITING_FOR_THE_MIGRATION_LOCK, lock).scalar() == 2  # noqa: E731
                wait_until(waiting, "both runs wait for the migration lock", runs)
            finally:
                # when: it is released, they race for it
                conn.execute(sa.select(sa.func.pg_advisory_unlock(MIGRATION_LOCK_KEY)))
            outputs = [run.communicate(timeout=120) for run in runs]
        holder.dispose()

        # then: both succeed, one migrated and the other found nothing to do
        assert [run.returncode for run in runs] == [0, 0], [err for _, err in outputs]
        assert sorted(out.strip() for out, _ in outputs) == [
            f"Migrated from an empty database to {HEAD}.",
            f"The database is at {HEAD} already: nothing to do.",
        ]
        assert revisions(url) == [HEAD]
        assert table_names(url) == TABLES


def test_production_serve_refuses_a_database_that_was_never_migrated(
    empty_database: str,
) -> None:
    result = serve_in_production(empty_database)

    assert result.returncode == 1, result.stderr
    assert "The database is not migrated (no revision)" in result.stderr
    assert "run `graphql-api migrate`" in result.stderr
    assert table_names(empty_database) == set()  # serve did not migrate it


def test_production_serve_refuses_a_database_behind_head(empty_database: str) -> None:
    migrate(make_settings(empty_database), PREVIOUS)

    result = serve_in_production(empty_database)

    assert result.returncode == 1, result.stderr
    assert f"The database is at revision {PREVIOUS}; this release needs {HEAD}" in result.stderr
    assert "run `graphql-api migrate`" in result.stderr
    assert revisions(empty_database) == [PREVIOUS]


def test_production_serve_starts_on_a_database_at_head(backend: Backend, tmp_path: Path) -> None:
    # as the API's own role on PostgreSQL: one that could not migrate anyway
    with serve_process(
        tmp_path / "server.log", DATABASE_URL=backend.app_url, ENVIRONMENT="production"
    ) as (base, _):
        assert sign_up(base, "deployed@example.com")


def test_production_serve_starts_on_a_database_a_newer_release_migrated(
    empty_database: str, tmp_path: Path
) -> None:
    # given: a later release's migration ran (the rolling deploy's first step, or a rollback)
    migrate(make_settings(empty_database))
    engine = sa.create_engine(empty_database)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999_later'"))
    engine.dispose()

    log = tmp_path / "server.log"
    with serve_process(log, DATABASE_URL=empty_database, ENVIRONMENT="production") as (base, _):
        assert httpx.get(f"{base}/readyz").status_code == 200
    assert "revision 9999_later, which this release does not know" in log.read_text()


@needs_postgresql
@pytest.mark.usefixtures("_postgresql_migrated")  # it creates the API's role
def test_production_serve_names_the_missing_grant_on_alembic_version() -> None:
    with throwaway_postgresql_database("deploy") as url:
        migrate(make_settings(url))
        as_app = sa.make_url(url).set(username=APP_ROLE).render_as_string(hide_password=False)

        result = serve_in_production(as_app)

    assert result.returncode == 1, result.stderr
    assert "permission denied for table alembic_version" in result.stderr
    assert "The API's role needs SELECT on it" in result.stderr


def test_serve_outside_production_migrates_first(empty_database: str, tmp_path: Path) -> None:
    with serve_process(tmp_path / "server.log", DATABASE_URL=empty_database) as (base, _):
        assert sign_up(base, "developer@example.com")
    assert revisions(empty_database) == [HEAD]
