"""Faults survived: slow statements and held locks time out, an exhausted pool answers at once,
and a PostgreSQL restart in the middle of a load loses no answered write and applies none twice.
Each answers SERVICE_UNAVAILABLE, a code that tells the client to retry."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from graphql_api.db import Database, RequestEnded
from graphql_api.errors import ServiceUnavailable
from graphql_api.models import TASKS
from tests import live, pgcluster
from tests.conftest import POSTGRESQL_ONLY, THROUGH_POOLER, Backend, make_settings
from tests.helpers import serve
from tests.tools import require_postgresql_server


async def test_a_cancelled_read_keeps_the_connection_until_its_thread_is_done(
    backend: Backend,
) -> None:
    """graphql-core cancels the sibling fields of an error that propagates; a sibling waiting
    for the database thread must not let the request use (or close) the connection while
    that thread still does (found by tests/test_compiled_differential.py)."""
    database = Database(make_settings(backend.app_url))
    request = database.request(None)
    events: list[object] = []

    def slow(conn: sa.Connection) -> None:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SELECT pg_sleep(0.3)")  # the request path waits on the loop
        else:
            time.sleep(0.3)  # in the database thread
        events.append(("finished", conn.closed))

    reading = asyncio.ensure_future(request.read_public(slow))
    await asyncio.sleep(0.1)
    reading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reading
    await request.close()
    events.append("closed")
    await database.dispose()
    assert events == [("finished", False), "closed"]


async def test_a_read_after_the_request_ended_opens_no_connection(backend: Backend) -> None:
    """A loader batch can come due after an error has ended its request (graphql-core stops
    waiting for the error's siblings): it must not check out a connection nobody returns."""
    database = Database(make_settings(backend.app_url))
    request = database.request(None)
    assert await request.read_public(lambda conn: conn.exec_driver_sql("SELECT 1").scalar()) == 1
    await request.close()
    with pytest.raises(RequestEnded):
        await request.read_public(lambda conn: conn.exec_driver_sql("SELECT 1").scalar())
    assert database.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    await database.dispose()


@POSTGRESQL_ONLY
async def test_the_api_connections_carry_timeouts_and_plan_cache_mode(backend: Backend) -> None:
    database = Database(make_settings(backend.app_url))
    names = (
        "statement_timeout",
        "lock_timeout",
        "idle_in_transaction_session_timeout",
        "plan_cache_mode",
    )

    def show(conn: sa.Connection) -> dict[str, str | None]:
        return {name: conn.exec_driver_sql(f"SHOW {name}").scalar() for name in names}

    request = database.request(None)
    shown = await request.read_public(show)
    await request.close()
    await database.dispose()
    assert shown == {
        "statement_timeout": "5s",
        "lock_timeout": "2s",
        "idle_in_transaction_session_timeout": "30s",
        "plan_cache_mode": "force_generic_plan",  # asyncpg keeps them prepared: plan once
    }


@POSTGRESQL_ONLY
async def test_a_statement_past_its_timeout_is_service_unavailable(backend: Backend) -> None:
    database = Database(make_settings(backend.app_url, db_statement_timeout_ms=200))
    request = database.request(None)
    try:
        started = time.monotonic()
        with pytest.raises(ServiceUnavailable):
            await request.read_public(lambda conn: conn.exec_driver_sql("SELECT pg_sleep(5)"))
        assert time.monotonic() - started < 2
    finally:
        await request.close()
        await database.dispose()


@POSTGRESQL_ONLY
async def test_a_held_lock_times_out_instead_of_hanging(
    backend: Backend, engine: sa.Engine
) -> None:
    async with serve(make_settings(backend.app_url, db_lock_timeout_ms=300)) as api:
        account = await api.sign_up()
        task = (
            await api.execute(
                'mutation { createTask(input: {title: "t"}) { id } }', as_user=account
            )
        ).ok()
        with engine.connect() as holder:  # another session holds the task's row lock
            holder.execute(sa.select(TASKS).with_for_update())
            started = time.monotonic()
            response = await api.execute(
                'mutation($id: ID!) { updateTask(id: $id, input: {title: "x"}) { id } }',
                {"id": task["createTask"]["id"]},
                as_user=account,
            )
            holder.rollback()
        assert response.codes == ["SERVICE_UNAVAILABLE"]
        assert time.monotonic() - started < 2


@THROUGH_POOLER  # the API's own pool runs out first when it is smaller than the pooler's
async def test_an_exhausted_pool_answers_promptly(backend: Backend) -> None:
    settings = backend.settings(db_pool_size=1, db_max_overflow=0, db_pool_timeout=0.3)
    async with serve(settings) as api:
        account = await api.sign_up()
        database = api.app.state.services.database
        held = await database.run(database.engine.connect)  # the only connection
        try:
            started = time.monotonic()
            response = await api.execute("{ me { id } }", as_user=account)
            elapsed = time.monotonic() - started
        finally:
            await database.run(held.close)
        assert response.codes == ["SERVICE_UNAVAILABLE"]
        assert "retry" in response.errors[0]["message"].lower()
        assert elapsed < 2
        assert (await api.execute("{ me { id } }", as_user=account)).ok()  # and it recovers


# --- a restart under load --------------------------------------------------------------------


@pytest.fixture
def cluster() -> Iterator[pgcluster.Cluster]:
    require_postgresql_server()
    cluster = pgcluster.Cluster()
    cluster.start()
    yield cluster
    cluster.stop()


async def test_a_connection_lost_with_the_server_is_service_unavailable(
    cluster: pgcluster.Cluster,
) -> None:
    """A request's connection dies with the server; the next statement must answer
    SERVICE_UNAVAILABLE, not fail while giving the dead connection back."""
    database = Database(make_settings(cluster.url))
    db = database.request(None)

    def select_one(conn: sa.Connection) -> int:
        return int(conn.execute(sa.text("SELECT 1")).scalar_one())

    try:
        assert await db.read_public(select_one) == 1
        cluster.pause()
        with pytest.raises(ServiceUnavailable):
            await db.write_public(select_one)
        with pytest.raises(ServiceUnavailable):
            await db.read_public(select_one)
        await db.close()
    finally:
        cluster.start()
        await database.dispose()


@pytest.fixture
def server(cluster: pgcluster.Cluster, tmp_path: Path) -> Iterator[str]:
    """The API under uvicorn, in a process of its own, on the throwaway cluster."""
    log = tmp_path / "server.log"
    with live.running_server(cluster.url, log, DB_POOL_SIZE="4", DB_POOL_TIMEOUT="1") as base:
        yield base


async def test_a_database_restart_under_load_loses_and_duplicates_nothing(
    server: str, cluster: pgcluster.Cluster
) -> None:
    create = "mutation($t: String!) { createTask(input: {title: $t}) { id title } }"
    answered: list[str] = []
    unavailable = 0
    async with httpx.AsyncClient(base_url=server, timeout=10) as client:
        signed_up = await client.post(
            "/graphql",
            json={
                "query": 'mutation { signUp(input: {email: "load@example.com", password: "password123"}) { token } }'
            },
        )
        headers = {"Authorization": f"Bearer {signed_up.json()['data']['signUp']['token']}"}

        async def writer(worker: int) -> None:
            nonlocal unavailable
            for n in range(30):
                title = f"task-{worker}-{n}"
                for _ in range(50):  # a client that retries with the same key until answered
                    try:
                        response = await client.post(
                            "/graphql",
                            json={"query": create, "variables": {"t": title}},
                            headers={**headers, "Idempotency-Key": title},
                        )
                        body = response.json()
                    except (httpx.HTTPError, ValueError):
                        body = {}
                    # A refused mutation answers null (with SERVICE_UNAVAILABLE): retry it.
                    if created := (body.get("data") or {}).get("createTask"):
                        answered.append(created["title"])
                        break
                    unavailable += 1
                    await asyncio.sleep(0.1)

        restart = threading.Thread(target=lambda: (time.sleep(0.5), cluster.restart()))
        restart.start()
        await asyncio.gather(*(writer(worker) for worker in range(4)))
        restart.join()
        ready = await client.get("/readyz")  # the API came back without a restart of its own

    assert ready.status_code == 200
    assert len(answered) == 120
    engine = sa.create_engine(cluster.url)
    with engine.connect() as conn:
        titles = list(conn.execute(sa.select(TASKS.c.title)).scalars())
    engine.dispose()
    assert sorted(titles) == sorted(answered)  # every answered write is there, none twice
