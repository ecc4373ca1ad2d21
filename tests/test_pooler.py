"""Behind a transaction-mode pooler (PgBouncer, as Neon's pooled endpoint runs it), where each
transaction may get a different server connection and each server connection serves many
clients in turn: the row-level-security setting never outlives its transaction, nothing is kept
in the session between transactions, the timeouts come from the role, and a saturated pooler
answers SERVICE_UNAVAILABLE instead of hanging. Each on both request paths: asyncpg and
psycopg2 (`DB_ASYNC_DRIVER=false`).

The suites of isolation, statement budgets and the task, tag and conversation API run behind
a pooler too (their `pgbouncer` backend, see THROUGH_POOLER in conftest); these tests give the
pooler a single server connection, so that every client's transactions take turns on it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from graphql_api.db import Database
from graphql_api.settings import Settings
from tests.conftest import APP_ROLE, POSTGRESQL_ONLY, Backend, make_settings
from tests.helpers import Account, Api, Response, serve
from tests.live import serve_process, sign_up
from tests.pgbouncer import PgBouncer, running
from tests.tools import require_pgbouncer

pytestmark = POSTGRESQL_ONLY

TITLES = "{ tasks { totalCount edges { node { title tags { name } subtasks { title } } } } }"
CREATE = "mutation($t: String!) { createTask(input: {title: $t}) { id } }"


@pytest.fixture(params=["asyncpg", "psycopg2"])
def driver(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def start_pgbouncer(
    backend: Backend, users: list[str], **options: str | int
) -> Iterator[PgBouncer]:
    require_pgbouncer()
    with running(backend.url, users, **options) as bouncer:
        yield bouncer


@pytest.fixture
def one_server_connection(backend: Backend) -> Iterator[PgBouncer]:
    """A PgBouncer whose pool for the API's role is ONE server connection."""
    yield from start_pgbouncer(backend, ["postgres", APP_ROLE], default_pool_size=1)


def pooled(bouncer: PgBouncer, url: str, driver: str, **overrides: Any) -> Settings:
    """The API's settings through `bouncer`, as README's "Neon" section says."""
    values = {"database_pooler": "transaction", "db_async_driver": driver == "asyncpg"}
    return make_settings(bouncer.url(url), **{**values, **overrides})


@pytest.fixture
def outsider(one_server_connection: PgBouncer, backend: Backend) -> Iterator[sa.Engine]:
    """Another client of the pooler, as the API's role, sending statements outside any
    transaction (autocommit): with one server connection, it gets the API's."""
    engine = sa.create_engine(
        one_server_connection.url(backend.app_url), isolation_level="AUTOCOMMIT", poolclass=NullPool
    )
    yield engine
    engine.dispose()


def outside_view(outsider: sa.Engine) -> dict[str, Any]:
    with outsider.connect() as conn:
        return {
            "app.user_id": conn.execute(
                sa.text("SELECT current_setting('app.user_id', true)")
            ).scalar(),
            "users": conn.execute(sa.text("SELECT count(*) FROM users")).scalar(),
            "tasks": conn.execute(sa.text("SELECT count(*) FROM tasks")).scalar(),
        }


async def create_tasks(api: Api, user: Account, count: int) -> None:
    for index in range(count):
        (await api.execute(CREATE, {"t": f"{user.email} {index}"}, as_user=user)).ok()


def titles(response: Response) -> set[str]:
    return {edge["node"]["title"] for edge in response.ok()["tasks"]["edges"]}


# --- the row-level-security setting ----------------------------------------------------------


async def test_two_users_interleaved_on_one_server_connection_see_only_their_own_rows(
    backend: Backend, one_server_connection: PgBouncer, outsider: sa.Engine, driver: str
) -> None:
    async with serve(pooled(one_server_connection, backend.app_url, driver)) as api:
        alice, bob = await api.sign_up(), await api.sign_up()
        await create_tasks(api, alice, 2)
        await create_tasks(api, bob, 3)
        for _ in range(3):
            # given: both users' requests at once, their transactions taking turns on the
            # pooler's one server connection
            users = [alice, bob] * 5
            responses = await asyncio.gather(*(api.execute(TITLES, as_user=u) for u in users))
            # then: each saw its own rows, and only those
            for user, response in zip(users, responses, strict=True):
                expected = 2 if user is alice else 3
                assert titles(response) == {f"{user.email} {i}" for i in range(expected)}
            # and a statement outside any transaction, on that same server connection, acts
            # for nobody
            assert outside_view(outsider) == {"app.user_id": "", "users": 0, "tasks": 0}


# --- no session state ------------------------------------------------------------------------


def discard_all(outsider: sa.Engine) -> None:
    """Reset the pooler's one server connection: prepared statements, session settings,
    temporary tables, all gone, as when the pooler hands the next transaction to a fresh one."""
    with outsider.connect() as conn:
        conn.execute(sa.text("DISCARD ALL"))


async def test_requests_rely_on_nothing_kept_in_the_session(
    backend: Backend, one_server_connection: PgBouncer, outsider: sa.Engine, driver: str
) -> None:
    """What a connection kept from one transaction to the next (named prepared statements
    cached for reuse, a user id or a timeout SET once per connection, a temporary table) is
    gone here before the next request: it would fail, or see nothing. (A SET per transaction
    instead of SET LOCAL would leak: the test above.)"""
    async with serve(pooled(one_server_connection, backend.app_url, driver)) as api:
        alice = await api.sign_up()
        await create_tasks(api, alice, 2)
        expected = (await api.execute(TITLES, as_user=alice)).ok()
        for round_number in range(3):
            discard_all(outsider)
            assert (await api.execute(TITLES, as_user=alice)).ok() == expected
            discard_all(outsider)
            (await api.execute(CREATE, {"t": f"after {round_number}"}, as_user=alice)).ok()
            discard_all(outsider)
            (await api.execute(CREATE, {"t": f"undone {round_number}"}, as_user=alice)).ok()
            expected = (await api.execute(TITLES, as_user=alice)).ok()
        assert expected["tasks"]["totalCount"] == 2 + 6


async def test_the_session_check_is_not_vacuous_asyncpg_caches_statements_without_the_setting(
    backend: Backend, one_server_connection: PgBouncer, outsider: sa.Engine
) -> None:
    """Without DATABASE_POOLER=transaction (and with no timeouts to send, which the pooler
    would refuse), asyncpg's prepared statements, cached per connection, are gone after the
    reset above: the check would catch a regression."""
    settings = pooled(
        one_server_connection,
        backend.app_url,
        "asyncpg",
        database_pooler="none",
        db_statement_timeout_ms=0,
        db_lock_timeout_ms=0,
        db_idle_in_transaction_timeout_ms=0,
        db_plan_cache_mode="auto",
    )
    async with serve(settings) as api:
        alice = await api.sign_up()
        (await api.execute(TITLES, as_user=alice)).ok()
        discard_all(outsider)
        response = await api.execute(TITLES, as_user=alice)
    assert response.codes == ["INTERNAL_SERVER_ERROR"]


# --- timeouts from the role ------------------------------------------------------------------

ROLE_TIMEOUTS = {
    "statement_timeout": "300ms",
    "lock_timeout": "0",
    "idle_in_transaction_session_timeout": "10s",
}


@pytest.fixture
def timeout_role(backend: Backend, engine: sa.Engine) -> Iterator[str]:
    """A login role like the API's, with its timeouts set on the role (`ALTER ROLE ... SET`),
    as README's "Neon" section says; created for this test (roles are the server's, not the
    database's), and dropped after."""
    role = f"graphql_api_timeouts_{uuid.uuid4().hex[:8]}"
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text(f"CREATE ROLE {role} LOGIN"))
        conn.execute(sa.text(f"GRANT USAGE ON SCHEMA public TO {role}"))
        conn.execute(
            sa.text(
                f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}"
            )
        )
        for name, value in ROLE_TIMEOUTS.items():
            conn.execute(sa.text(f"ALTER ROLE {role} SET {name} = '{value}'"))
    try:
        yield role
    finally:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text(f"DROP OWNED BY {role}"))
            conn.execute(sa.text(f"DROP ROLE {role}"))


@pytest.fixture
def role_pgbouncer(backend: Backend, timeout_role: str) -> Iterator[PgBouncer]:
    yield from start_pgbouncer(backend, ["postgres", timeout_role], default_pool_size=2)


def role_url(backend: Backend, role: str) -> str:
    return sa.make_url(backend.url).set(username=role).render_as_string(hide_password=False)


async def test_the_timeouts_come_from_the_role_not_from_settings(
    backend: Backend, timeout_role: str, role_pgbouncer: PgBouncer, driver: str
) -> None:
    # given: settings that would send other timeouts, were any startup parameter sent
    settings = pooled(role_pgbouncer, role_url(backend, timeout_role), driver)
    assert settings.db_statement_timeout_ms == 5000
    database = Database(settings)
    request = database.request(None)

    def show(conn: sa.Connection) -> dict[str, Any]:
        return {name: conn.exec_driver_sql(f"SHOW {name}").scalar() for name in ROLE_TIMEOUTS}

    try:
        shown = await request.read_public(show)
    finally:
        await request.close()
        await database.dispose()
    assert shown == ROLE_TIMEOUTS


async def test_a_statement_past_the_role_s_timeout_is_service_unavailable(
    backend: Backend, timeout_role: str, role_pgbouncer: PgBouncer, engine: sa.Engine, driver: str
) -> None:
    settings = pooled(role_pgbouncer, role_url(backend, timeout_role), driver)
    async with serve(settings) as api:
        alice = await api.sign_up()
        await create_tasks(api, alice, 1)
        with engine.connect() as holder:  # the owner locks the tasks table, and keeps it
            holder.execute(sa.text("LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE"))
            response = await api.execute(TITLES, as_user=alice)
            # then: answered while the lock is still held, so by the role's statement_timeout
            holder.rollback()
        assert response.codes == ["SERVICE_UNAVAILABLE"]
        assert titles(await api.execute(TITLES, as_user=alice)) == {f"{alice.email} 0"}


# --- a saturated pooler ----------------------------------------------------------------------


@pytest.fixture
def saturable(backend: Backend) -> Iterator[PgBouncer]:
    """A pooler with one server connection, whose clients wait for it one second at most."""
    yield from start_pgbouncer(
        backend, ["postgres", APP_ROLE], default_pool_size=1, query_wait_timeout=1
    )


async def test_a_saturated_pooler_answers_service_unavailable_while_it_stays_saturated(
    backend: Backend, saturable: PgBouncer, driver: str
) -> None:
    async with serve(pooled(saturable, backend.app_url, driver)) as api:
        alice = await api.sign_up()
        holder = sa.create_engine(saturable.url(backend.app_url), poolclass=NullPool)
        try:
            with holder.connect() as held:  # a transaction that keeps the one server connection
                held.execute(sa.text("SELECT 1"))
                response = await asyncio.wait_for(api.execute(TITLES, as_user=alice), 60)
                # then: answered while the server connection is still held: not waited out
                assert held.execute(sa.text("SELECT 1")).scalar() == 1
        finally:
            holder.dispose()
        assert response.codes == ["SERVICE_UNAVAILABLE"]
        assert "retry" in response.errors[0]["message"].lower()
        assert (await api.execute(TITLES, as_user=alice)).ok()  # and it recovers


# --- as deployed -----------------------------------------------------------------------------


def test_production_serve_with_two_workers_shares_one_server_connection(
    backend: Backend, one_server_connection: PgBouncer, tmp_path: Path, driver: str
) -> None:
    """`graphql-api serve` as on Neon: production (its revision check goes through the pooler
    too), two worker processes whose statements take turns on the pooler's one server
    connection: nothing one process prepares may clash with, or be missing for, the other."""
    env = {
        "DATABASE_URL": one_server_connection.url(backend.app_url),
        "DATABASE_POOLER": "transaction",
        "DB_ASYNC_DRIVER": str(driver == "asyncpg").lower(),
        "DB_POOL_SIZE": "2",
        "ENVIRONMENT": "production",
    }
    with serve_process(tmp_path / "server.log", "--workers", "2", **env) as (base, _):
        assert httpx.get(f"{base}/readyz").status_code == 200
        token = sign_up(base, "deployed@example.com")

        def task_count(_: int) -> Any:
            response = httpx.post(
                f"{base}/graphql",
                json={"query": "{ tasks { totalCount } }"},
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            )
            return response.json()

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(task_count, range(40)))
    assert answers == [{"data": {"tasks": {"totalCount": 0}}}] * 40
