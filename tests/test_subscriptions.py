"""Subscriptions over WebSocket (graphql-transport-ws on /graphql), against `graphql-api serve`
processes on PostgreSQL: the Python `gql` client, and a plain WebSocket where a test needs
every message and close code. Changes resume exactly from a cursor; a subscriber on one process
hears of writes through another, and survives the death of its process by resuming on the
other; tokens, limits and slow clients end connections with the codes the README lists.
SQLite, where subscriptions hear of the writes of their own process only, has a test too."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
import pytest
from gql import Client, GraphQLRequest
from gql.transport.websockets import WebsocketsTransport

from graphql_api.cli import PROJECT_ROOT, migrate
from tests import live, pgcluster
from tests.conftest import (
    JWT_SECRET,
    TEST_DATABASE_URL,
    grant_app_role,
    make_settings,
    throwaway_postgresql_database,
)
from tests.tools import require_postgresql_server, require_test_database
from tests.ws import (
    CHANGES,
    WAIT_SECONDS,
    Closed,
    GraphQLSocket,
    connect,
    create_task,
    execute,
    feed_cursor,
    metric,
    sign_up,
    signed_in,
    until_subscriptions,
    ws_url,
)

MESSAGE_POSTED = (
    "subscription Posted($c: ID!) { messagePosted(conversationId: $c) { id content "
    "conversation { id } } }"
)
CREATE_CONVERSATION = "mutation($t: String!) { createConversation(input: {title: $t}) { id } }"
POST_MESSAGE = (
    "mutation($c: ID!, $m: String!) { postMessage(conversationId: $c, "
    "input: {role: USER, content: $m}) { id } }"
)
SERVE = {"SIGN_UP_MAX_PER_ADDRESS": "100000"}  # every test signs up users of its own
MISSING_CONVERSATION = "Q29udmVyc2F0aW9uOjAwMDAwMDAwLTAwMDAtMDAwMC0wMDAwLTAwMDAwMDAwMDAwMA=="


@contextmanager
def server_log_clean(log: Path) -> Iterator[None]:
    yield
    text = log.read_text()
    assert "Traceback" not in text, text[-3000:]


@pytest.fixture(scope="module")
def databases() -> Iterator[tuple[str, str]]:
    """A migrated PostgreSQL database of this module's own: (owner's URL, the API's URL)."""
    require_test_database(TEST_DATABASE_URL)
    with throwaway_postgresql_database("h_subs") as owner:
        migrate(make_settings(owner))
        yield owner, grant_app_role(owner)


@pytest.fixture(scope="module")
def database(databases: tuple[str, str]) -> str:
    return databases[1]


@pytest.fixture(scope="module")
def server(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("subscriptions") / "server.log"
    with (
        live.running_server(database, log, JWT_LEEWAY_SECONDS="0", **SERVE) as base,
        server_log_clean(log),
    ):
        yield base


@pytest.fixture(scope="module")
def other_server(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second `graphql-api serve` process on the same database."""
    log = tmp_path_factory.mktemp("subscriptions") / "other.log"
    with live.running_server(database, log, **SERVE) as base, server_log_clean(log):
        yield base


@pytest.fixture(scope="module")
def small_server(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server with one pooled connection and small limits."""
    log = tmp_path_factory.mktemp("subscriptions") / "small.log"
    settings = {
        **SERVE,
        "DB_POOL_SIZE": "1",
        "DB_MAX_OVERFLOW": "0",
        "DB_POOL_TIMEOUT": "2",
        "WS_CONNECTIONS_PER_USER": "2",
        "WS_SUBSCRIPTIONS_PER_CONNECTION": "2",
        "WS_QUEUE_SIZE": "2",
    }
    with live.running_server(database, log, **settings) as base, server_log_clean(log):
        yield base


def email(name: str) -> str:
    return f"{name}-{time.monotonic_ns()}@example.com"


async def change_of(socket: GraphQLSocket, id: str = "1") -> dict[str, Any]:
    change: dict[str, Any] = (await socket.next(id))["changes"]
    return change


async def changes_until_closed(socket: GraphQLSocket) -> tuple[list[dict[str, Any]], Closed]:
    """The changes that arrive until the connection closes, and how it closed."""
    received = []
    while True:
        try:
            received.append(await change_of(socket))
        except Closed as closed:
            return received, closed


def titles(changes: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return [(c["kind"], (c["node"] or {}).get("title")) for c in changes]


# --- real clients -----------------------------------------------------------------------------


async def test_the_gql_client_receives_each_change_as_it_commits(server: str) -> None:
    token = await sign_up(server, email("gql"))
    since = await feed_cursor(server, token)
    transport = WebsocketsTransport(
        url=ws_url(server), init_payload={"Authorization": f"Bearer {token}"}
    )
    async with Client(transport=transport) as session:
        stream = session.subscribe(GraphQLRequest(CHANGES, variable_values={"since": since}))
        first = await create_task(server, token, "Written before the subscription ran")
        received = [(await anext(stream))["changes"]]
        await create_task(server, token, "Written while it waits")
        received.append((await anext(stream))["changes"])
        await stream.aclose()
    assert titles(received) == [
        ("CREATED", "Written before the subscription ran"),
        ("CREATED", "Written while it waits"),
    ]
    assert received[0]["id"] == first


# --- resuming -------------------------------------------------------------------------------


async def test_a_reconnection_with_the_last_cursor_gets_exactly_what_was_missed_then_live(
    server: str,
) -> None:
    token = await sign_up(server, email("resume"))
    since = await feed_cursor(server, token)
    async with signed_in(server, token) as socket:
        await socket.subscribe("1", CHANGES, {"since": since})
        task = await create_task(server, token, "Before the disconnection")
        last = await change_of(socket)
    # while disconnected: three changes
    other = await create_task(server, token, "Missed 1")
    await execute(
        server,
        'mutation($id: ID!) { updateTask(id: $id, input: {title: "Missed 2"}) { id } }',
        {"id": task},
        token,
    )
    await execute(server, "mutation($id: ID!) { deleteTask(id: $id) { id } }", {"id": other}, token)
    async with signed_in(server, token) as socket:
        await socket.subscribe("1", CHANGES, {"since": last["cursor"]})
        missed = [await change_of(socket) for _ in range(3)]
        await create_task(server, token, "Live again")
        live_change = await change_of(socket)
    assert [(c["kind"], c["id"]) for c in missed] == [
        ("CREATED", other),
        ("UPDATED", task),
        ("DELETED", other),
    ]
    assert titles(missed) == [
        ("CREATED", "Missed 1"),
        ("UPDATED", "Missed 2"),
        ("DELETED", "Missed 1"),
    ]
    assert titles([live_change]) == [("CREATED", "Live again")]


async def test_a_cursor_no_longer_kept_answers_cursor_expired(
    server: str, databases: tuple[str, str], tmp_path: Path
) -> None:
    token = await sign_up(server, email("expired"))
    since = await feed_cursor(server, token)
    await create_task(server, token, "Forgotten soon")
    purge = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "graphql_api.cli", "purge", "--older-than", "0"],
        env={**os.environ, "DATABASE_URL": databases[0], "CHANGES_RETENTION_DAYS": "0"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert purge.returncode == 0, purge.stderr
    async with signed_in(server, token) as socket:
        await socket.subscribe("1", CHANGES, {"since": since})
        refusal = await socket.message("1")
    assert refusal["type"] == "error", refusal
    assert [e["extensions"]["code"] for e in refusal["payload"]] == ["CURSOR_EXPIRED"]


# --- across processes -----------------------------------------------------------------------


async def test_a_subscriber_on_one_process_receives_changes_written_through_another(
    server: str, other_server: str
) -> None:
    token = await sign_up(server, email("fanout"))
    since = await feed_cursor(server, token)
    async with signed_in(server, token) as socket:
        await socket.subscribe("1", CHANGES, {"since": since})
        await create_task(other_server, token, "Through the other process")
        first = await change_of(socket)
        await create_task(other_server, token, "And again, live")
        second = await change_of(socket)
    assert titles([first, second]) == [
        ("CREATED", "Through the other process"),
        ("CREATED", "And again, live"),
    ]


async def test_a_client_whose_server_dies_mid_stream_resumes_on_another_without_loss(
    database: str, other_server: str, tmp_path: Path
) -> None:
    log = tmp_path / "dying.log"
    with live.live_server(database, log, **SERVE) as (dying, process):
        token = await sign_up(dying, email("failover"))
        since = await feed_cursor(dying, token)
        received: list[dict[str, Any]] = []
        async with signed_in(dying, token) as socket:
            await socket.subscribe("1", CHANGES, {"since": since})
            # ten commits through the other process; the first one in, this one dies
            writes = asyncio.create_task(_create_tasks(other_server, token, 10))
            received.append(await change_of(socket))
            process.send_signal(signal.SIGKILL)
            received += (await changes_until_closed(socket))[0]  # what it sent before it died
            await writes
    async with signed_in(other_server, token) as socket:
        await socket.subscribe("1", CHANGES, {"since": received[-1]["cursor"]})
        while len(received) < 10:
            received.append(await change_of(socket))
        await create_task(other_server, token, "After the failover")
        received.append(await change_of(socket))
    assert titles(received) == [("CREATED", f"Task {n}") for n in range(10)] + [
        ("CREATED", "After the failover")
    ]


async def _create_tasks(base: str, token: str, count: int) -> None:
    for n in range(count):
        await create_task(base, token, f"Task {n}")


GRAPHQL_WS = PROJECT_ROOT / "tests" / "graphql_ws"  # package.json, package-lock.json, subscribe.mjs


def install_graphql_ws() -> Path:
    """graphql-ws's client from the committed lockfile (into tests/.work/graphql_ws)."""
    return live.npm_ci(GRAPHQL_WS, ["package.json", "package-lock.json", "subscribe.mjs"])


async def test_the_graphql_ws_client_under_node_resumes_on_another_server_when_its_own_dies(
    needs_npm: None, database: str, other_server: str, tmp_path: Path
) -> None:
    folder = await asyncio.to_thread(install_graphql_ws)
    with live.live_server(database, tmp_path / "dying.log", **SERVE) as (dying, process):
        token = await sign_up(dying, email("graphql-ws"))
        config = {
            "urls": [ws_url(dying), ws_url(other_server)],
            "token": token,
            "since": await feed_cursor(dying, token),
            "count": 11,
        }
        node = await asyncio.create_subprocess_exec(
            "node",
            "subscribe.mjs",
            json.dumps(config),
            cwd=folder,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            writes = asyncio.create_task(_create_tasks(other_server, token, 10))
            received = [await _printed(node)]
            process.send_signal(signal.SIGKILL)
            await writes
            while len(received) < 10:
                received.append(await _printed(node))
            await create_task(other_server, token, "After the failover")
            received.append(await _printed(node))
            assert await asyncio.wait_for(node.wait(), WAIT_SECONDS) == 0
        finally:
            if node.returncode is None:
                node.kill()
                await node.wait()
    assert titles(received) == [("CREATED", f"Task {n}") for n in range(10)] + [
        ("CREATED", "After the failover")
    ]


async def _printed(node: asyncio.subprocess.Process) -> dict[str, Any]:
    """The next change the Node.js client printed."""
    assert node.stdout is not None
    assert node.stderr is not None
    line = await asyncio.wait_for(node.stdout.readline(), WAIT_SECONDS)
    if not line:
        pytest.fail(f"the graphql-ws client ended: {(await node.stderr.read()).decode()}")
    change: dict[str, Any] = json.loads(line)
    return change


# --- messagePosted ----------------------------------------------------------------------------


async def test_message_posted_streams_the_new_messages_of_its_conversation_only(
    small_server: str,
) -> None:
    token = await sign_up(small_server, email("chat"))
    chat = (await execute(small_server, CREATE_CONVERSATION, {"t": "Chat"}, token))[
        "createConversation"
    ]["id"]
    elsewhere = (await execute(small_server, CREATE_CONVERSATION, {"t": "Other"}, token))[
        "createConversation"
    ]["id"]
    await until_subscriptions(small_server, 0)
    async with signed_in(small_server, token) as socket:
        await socket.subscribe("1", MESSAGE_POSTED, {"c": chat})
        await until_subscriptions(small_server, 1)
        await execute(small_server, POST_MESSAGE, {"c": elsewhere, "m": "not here"}, token)
        await execute(small_server, POST_MESSAGE, {"c": chat, "m": "hello"}, token)
        await execute(small_server, POST_MESSAGE, {"c": chat, "m": "again"}, token)
        posted = [(await socket.next("1"))["messagePosted"] for _ in range(2)]
    assert [m["content"] for m in posted] == ["hello", "again"]
    assert {m["conversation"]["id"] for m in posted} == {chat}


async def test_message_posted_on_a_foreign_or_missing_conversation_answers_not_found_alike(
    server: str,
) -> None:
    victim = await sign_up(server, email("victim"))
    theirs = (await execute(server, CREATE_CONVERSATION, {"t": "Secret"}, victim))[
        "createConversation"
    ]["id"]
    attacker = await sign_up(server, email("attacker"))
    answers = []
    async with signed_in(server, attacker) as socket:
        for n, conversation in enumerate([theirs, MISSING_CONVERSATION]):
            await socket.subscribe(str(n), MESSAGE_POSTED, {"c": conversation})
            answer = await socket.message(str(n))
            for error in answer["payload"]:
                del error["extensions"]["requestId"]
            answers.append((answer["type"], answer["payload"]))
    assert answers[0] == answers[1]
    kind, errors = answers[0]
    assert kind == "error"
    assert errors == [
        {
            "message": "Conversation not found.",
            "locations": [{"line": 1, "column": 32}],
            "path": ["messagePosted"],
            "extensions": {"code": "NOT_FOUND"},
        }
    ]


# --- tokens -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (None, 4401),
        ({}, 4401),
        ({"Authorization": "Bearer not.a.token"}, 4403),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, 4403),
    ],
    ids=["no-payload", "no-token", "garbage", "not-bearer"],
)
async def test_connection_init_without_a_valid_token_is_refused(
    server: str, payload: dict[str, str] | None, code: int
) -> None:
    async with connect(server) as socket:
        with pytest.raises(Closed) as refused:
            await socket.init(payload)
    assert refused.value.code == code


async def test_a_subscribe_before_connection_init_closes_with_4401(server: str) -> None:
    async with connect(server) as socket:
        await socket.subscribe("1", CHANGES)
        closed = await socket.closed()
    assert closed.code == 4401


async def test_a_signed_out_token_is_refused_and_closes_a_connection_at_its_next_read(
    server: str,
) -> None:
    account = email("signed-out")
    old = await sign_up(server, account)
    since = await feed_cursor(server, old)
    async with signed_in(server, old) as socket:
        await socket.subscribe("1", CHANGES, {"since": since})
        await execute(server, "mutation { signOutEverywhere }", token=old)
        fresh = (
            await execute(
                server,
                'mutation($e: String!) { signIn(input: {email: $e, password: "password123"}) { token } }',
                {"e": account},
            )
        )["signIn"]["token"]
        await create_task(server, fresh, "Written from another device")
        closed = await socket.closed()
    assert (closed.code, closed.reason) == (
        4403,
        "Forbidden: This token was signed out (password changed, or signed out everywhere): "
        "sign in again.",
    )
    async with connect(server) as socket:
        with pytest.raises(Closed) as refused:
            await socket.init({"Authorization": f"Bearer {old}"})
    assert refused.value.code == 4403


async def test_the_connection_closes_when_its_token_expires(server: str) -> None:
    token = await sign_up(server, email("expiring"))
    claims = jwt.decode(token, options={"verify_signature": False})
    now = int(time.time())
    short = jwt.encode(
        {**claims, "iat": now, "iat_us": now * 1_000_000, "exp": now + 2}, JWT_SECRET, "HS256"
    )
    async with signed_in(server, short) as socket:
        await socket.subscribe("1", CHANGES)
        closed = await socket.closed()
    assert (closed.code, closed.reason) == (4403, "Forbidden: token expired")


# --- limits and slow clients --------------------------------------------------------------------


async def test_connections_per_user_and_operations_per_connection_are_limited(
    small_server: str,
) -> None:
    token = await sign_up(small_server, email("limits"))
    async with signed_in(small_server, token) as first, signed_in(small_server, token):
        async with connect(small_server) as third:
            with pytest.raises(Closed) as refused:
                await third.init({"Authorization": f"Bearer {token}"})
        assert (refused.value.code, refused.value.reason) == (
            4029,
            "Too many connections: at most 2 per user",
        )
        since = await feed_cursor(small_server, token)
        for id in ("1", "2", "3"):
            await first.subscribe(id, CHANGES, {"since": since})
        refusal = await first.message("3")
        assert refusal["type"] == "error"
        assert refusal["payload"][0]["extensions"] == {
            "code": "BAD_REQUEST",
            "limit": "subscriptionsPerConnection",
        }
        await create_task(small_server, token, "Both still hear it")  # the connection lives on
        assert (
            titles([await change_of(first, "1"), await change_of(first, "2")])
            == [("CREATED", "Both still hear it")] * 2
        )


async def test_a_message_larger_than_a_request_body_closes_the_connection(server: str) -> None:
    token = await sign_up(server, email("large"))
    async with signed_in(server, token) as socket:
        await socket.subscribe("1", CHANGES + " " * 300_000)  # MAX_BODY_BYTES: 256 KiB
        closed = await socket.closed()
    assert closed.code == 1009  # message too big


async def test_idle_subscriptions_hold_no_pooled_connection(small_server: str) -> None:
    """The server has ONE pooled connection (and waits 2 s for it): four subscriptions wait
    for changes, and requests are still served; then one write reaches all four."""
    token = await sign_up(small_server, email("idle"))
    since = await feed_cursor(small_server, token)
    async with signed_in(small_server, token) as a, signed_in(small_server, token) as b:
        for socket in (a, b):
            for id in ("1", "2"):
                await socket.subscribe(id, CHANGES, {"since": since})
        for _ in range(3):
            assert (await execute(small_server, "{ tasks { totalCount } }", token=token)) == {
                "tasks": {"totalCount": 0}
            }
        await create_task(small_server, token, "For all four")
        heard = [await change_of(socket, id) for socket in (a, b) for id in ("1", "2")]
    assert titles(heard) == [("CREATED", "For all four")] * 4


async def test_a_client_too_slow_to_read_is_closed_with_4013_and_resumes_from_its_cursor(
    small_server: str,
) -> None:
    """The client stops reading: the server's socket buffers fill and its subscription waits
    to send while commits keep coming. Past WS_QUEUE_SIZE (2) of them, the server closes the
    connection with 4013. What it sent before arrives; resuming from the last cursor received
    brings exactly the rest."""
    token = await sign_up(small_server, email("slow"))
    ids = []
    for batch in range(5):
        tasks = {
            f"t{n}": {"title": f"Task {batch}.{n}", "description": "x" * 900} for n in range(10)
        }
        variables = ", ".join(f"${name}: CreateTaskInput!" for name in tasks)
        fields = " ".join(f"{name}: createTask(input: ${name}) {{ id }}" for name in tasks)
        created = await execute(small_server, f"mutation({variables}) {{ {fields} }}", tasks, token)
        ids += [task["id"] for task in created.values()]
    since = await feed_cursor(small_server, token)
    closes = 'graphql_websocket_closes_total{code="4013"}'
    closed_before = await metric(small_server, closes)
    # A small receive buffer, no compression, and a client that stops reading after 4 messages.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    address = urlsplit(small_server)
    sock.connect((address.hostname, address.port))
    commits = 0
    async with signed_in(small_server, token, sock=sock, max_queue=4, compression=None) as slow:
        await slow.subscribe("1", HEAVY_CHANGES, {"since": since})
        while await metric(small_server, closes) == closed_before:
            assert commits < 200, "the server never closed the slow connection"
            await execute(
                small_server, COMPLETE_TASKS, {"ids": ids, "done": commits % 2 == 0}, token
            )
            commits += 1
        received, closed = await changes_until_closed(slow)  # what was sent, then the close
    assert (closed.code, closed.reason) == (
        4013,
        "Too slow: reconnect and resume from your last cursor",
    )
    assert received, "nothing arrived before the close"
    async with signed_in(small_server, token) as again:
        await again.subscribe("1", HEAVY_CHANGES, {"since": received[-1]["cursor"]})
        while len(received) < commits * len(ids):
            received.append(await change_of(again))
    assert len({change["cursor"] for change in received}) == commits * len(ids)  # none twice
    assert received[-1]["cursor"] == await feed_cursor(small_server, token)  # none missed
    assert {change["kind"] for change in received} == {"UPDATED"}


DESCRIPTIONS = " ".join(f"d{n}: description" for n in range(14))
HEAVY_CHANGES = (  # 13 KB a change: a few commits fill the socket's buffers
    "subscription($since: String) { changes(since: $since) { cursor kind id "
    f"node {{ ... on Task {{ {DESCRIPTIONS} }} }} }} }}"
)
COMPLETE_TASKS = (
    "mutation($ids: [ID!]!, $done: Boolean!) { completeTasks(ids: $ids, completed: $done) { id } }"
)


# --- SQLite -----------------------------------------------------------------------------------


async def test_on_sqlite_subscriptions_hear_the_writes_of_their_own_process(tmp_path: Path) -> None:
    """SQLite has no NOTIFY: a process announces its own writes to its subscriptions (README:
    with several workers, a subscriber hears of the writes of its own worker only)."""
    log = tmp_path / "server.log"
    with (
        live.running_server(f"sqlite:///{tmp_path / 'api.db'}", log) as base,
        server_log_clean(log),
    ):
        token = await sign_up(base, "sqlite@example.com")
        since = await feed_cursor(base, token)
        async with signed_in(base, token) as socket:
            await socket.subscribe("1", CHANGES, {"since": since})
            await create_task(base, token, "Replayed")
            replayed = await change_of(socket)
            await create_task(base, token, "Live")
            live_change = await change_of(socket)
        await create_task(base, token, "Missed")
        async with signed_in(base, token) as socket:
            await socket.subscribe("1", CHANGES, {"since": live_change["cursor"]})
            missed = await change_of(socket)
    assert titles([replayed, live_change, missed]) == [
        ("CREATED", "Replayed"),
        ("CREATED", "Live"),
        ("CREATED", "Missed"),
    ]


# --- a database restart -----------------------------------------------------------------------


async def test_a_subscriber_loses_nothing_when_the_database_restarts(tmp_path: Path) -> None:
    """The process's LISTEN connection dies with the server and comes back; every subscription
    then reads once. A change committed after the restart arrives, on the same connection or,
    if the subscription's own read met a dead connection (closed with 1013), after resuming
    from the last cursor, as a client does."""
    require_postgresql_server()
    cluster = pgcluster.Cluster()
    cluster.start()
    try:
        log = tmp_path / "server.log"
        with live.running_server(cluster.url, log, DB_POOL_TIMEOUT="1") as base:
            token = await sign_up(base, "restart@example.com")
            since = await feed_cursor(base, token)
            async with signed_in(base, token) as socket:
                await socket.subscribe("1", CHANGES, {"since": since})
                await create_task(base, token, "Before the restart")
                before = await change_of(socket)
                await asyncio.to_thread(cluster.restart)
                await _create_task_retrying(base, token, "After the restart")
                received, closed = await _changes_or_close(socket)
            if closed is not None:
                assert closed.code == 1013, closed
                async with signed_in(base, token) as socket:
                    await socket.subscribe("1", CHANGES, {"since": before["cursor"]})
                    received = [await change_of(socket)]
    finally:
        cluster.stop()
    assert titles([before, *received]) == [
        ("CREATED", "Before the restart"),
        ("CREATED", "After the restart"),
    ]


async def _create_task_retrying(base: str, token: str, title: str) -> None:
    """`createTask`, again while the database answers SERVICE_UNAVAILABLE, as a client does."""
    async with httpx.AsyncClient(timeout=WAIT_SECONDS) as client:
        for _ in range(100):
            response = await client.post(
                f"{base}/graphql",
                json={"query": CREATE_TASK, "variables": {"t": title}},
                headers={"Authorization": f"Bearer {token}"},
            )
            errors = response.json().get("errors") or []
            if not errors:
                return
            assert [e["extensions"]["code"] for e in errors] == ["SERVICE_UNAVAILABLE"], errors
            await asyncio.sleep(0.2)
    pytest.fail("the database never came back")


CREATE_TASK = "mutation($t: String!) { createTask(input: {title: $t}) { id } }"


async def _changes_or_close(socket: GraphQLSocket) -> tuple[list[dict[str, Any]], Closed | None]:
    try:
        return [await change_of(socket)], None
    except Closed as closed:
        return [], closed
