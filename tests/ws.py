"""Test helpers for live updates: a graphql-transport-ws client on a plain WebSocket (the
`websockets` library, which gql's transport runs on too), so a test sees every message and
every close code; and the HTTP side of a live server, as a second client."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import websockets
from websockets.asyncio.client import ClientConnection

WAIT_SECONDS = 60.0
"""Longest wait for something the server must do: only so that a broken server fails a test
instead of hanging it (no assertion depends on how fast anything is)."""
SUBPROTOCOL = "graphql-transport-ws"

CHANGES = (
    "subscription Changes($since: String) { changes(since: $since) { cursor kind id "
    "node { id ... on Task { title } ... on Message { content } } } }"
)


def ws_url(base: str) -> str:
    """`http://host:port` -> `ws://host:port/graphql`."""
    return re.sub(r"^http", "ws", base) + "/graphql"


class Closed(Exception):
    """The server closed the connection."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"closed {code}: {reason}")
        self.code = code
        self.reason = reason


class GraphQLSocket:
    """One graphql-transport-ws connection, its messages sorted by operation id."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self._by_id: dict[str | None, deque[dict[str, Any]]] = defaultdict(deque)

    async def send(self, message: dict[str, Any]) -> None:
        await self.connection.send(json.dumps(message))

    async def init(self, payload: dict[str, Any] | None) -> dict[str, Any]:
        """`connection_init`; the answer (`connection_ack`), or Closed."""
        message: dict[str, Any] = {"type": "connection_init"}
        if payload is not None:
            message["payload"] = payload
        await self.send(message)
        return await self.message(None)

    async def subscribe(self, id: str, query: str, variables: dict[str, Any] | None = None) -> None:
        payload: dict[str, Any] = {"query": query}
        if variables is not None:
            payload["variables"] = variables
        await self.send({"id": id, "type": "subscribe", "payload": payload})

    async def message(self, id: str | None) -> dict[str, Any]:
        """The next message of operation `id` (None: of the connection itself)."""
        while not self._by_id[id]:
            try:
                raw = await asyncio.wait_for(self.connection.recv(), WAIT_SECONDS)
            except websockets.ConnectionClosed as closed:
                rcvd = closed.rcvd
                raise Closed(rcvd.code if rcvd else None, rcvd.reason if rcvd else "") from None
            message = json.loads(raw)
            self._by_id[message.get("id")].append(message)
        return self._by_id[id].popleft()

    async def next(self, id: str) -> dict[str, Any]:
        """The data of operation `id`'s next result (which must have no error)."""
        message = await self.message(id)
        assert message["type"] == "next", message
        assert "errors" not in message["payload"], message
        data: dict[str, Any] = message["payload"]["data"]
        return data

    async def closed(self) -> Closed:
        """Wait for the server to close the connection (messages meanwhile are dropped)."""
        while True:
            try:
                await self.message("-")
            except Closed as closed:
                return closed


@asynccontextmanager
async def connect(base: str, **options: Any) -> AsyncIterator[GraphQLSocket]:
    async with websockets.connect(ws_url(base), subprotocols=[SUBPROTOCOL], **options) as c:
        yield GraphQLSocket(c)


@asynccontextmanager
async def signed_in(base: str, token: str, **options: Any) -> AsyncIterator[GraphQLSocket]:
    """A connection acknowledged for `token`."""
    async with connect(base, **options) as socket:
        ack = await socket.init({"Authorization": f"Bearer {token}"})
        assert ack == {"type": "connection_ack"}, ack
        yield socket


async def execute(
    base: str, query: str, variables: dict[str, Any] | None = None, token: str | None = None
) -> Any:
    """A query or mutation over HTTP; its data (errors fail the test)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(timeout=WAIT_SECONDS) as client:
        response = await client.post(
            f"{base}/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


async def sign_up(base: str, email: str) -> str:
    data = await execute(
        base,
        'mutation($e: String!) { signUp(input: {email: $e, password: "password123"}) { token } }',
        {"e": email},
    )
    token: str = data["signUp"]["token"]
    return token


async def create_task(base: str, token: str, title: str) -> str:
    data = await execute(
        base, "mutation($t: String!) { createTask(input: {title: $t}) { id } }", {"t": title}, token
    )
    task_id: str = data["createTask"]["id"]
    return task_id


async def feed_cursor(base: str, token: str) -> str:
    """The cursor after the user's latest change (the `changes` query, to its end)."""
    cursor = None
    while True:
        data = await execute(
            base,
            "query($s: String) { changes(since: $s, first: 100) { cursor hasMore } }",
            {"s": cursor},
            token,
        )
        cursor = data["changes"]["cursor"]
        if not data["changes"]["hasMore"]:
            return str(cursor)


async def metric(base: str, series: str) -> float:
    """A series of the server's /metrics (`name` or `name{label="value"}`); 0 if absent."""
    async with httpx.AsyncClient(timeout=WAIT_SECONDS) as client:
        return _series((await client.get(f"{base}/metrics")).text, series)


def _series(metrics: str, series: str) -> float:
    found = re.search(rf"^{re.escape(series)} (\S+)$", metrics, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def wait_for_subscriptions(base: str, count: int) -> None:
    """`until_subscriptions`, for a test without an event loop (Playwright's sync API)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while _series(httpx.get(f"{base}/metrics").text, "graphql_subscriptions") != count:
        assert time.monotonic() < deadline, f"the server never had {count} subscriptions"
        time.sleep(0.05)


async def until_metric(base: str, series: str, value: float) -> None:
    """Wait until a series of the server's /metrics has `value`."""
    deadline = time.monotonic() + WAIT_SECONDS
    while await metric(base, series) != value:
        assert time.monotonic() < deadline, f"{series} never was {value}"
        await asyncio.sleep(0.05)


async def until_subscriptions(base: str, count: int) -> None:
    """Wait until the server has `count` subscriptions waiting for changes: a subscription
    without `since` starts from the moment it is registered."""
    await until_metric(base, "graphql_subscriptions", count)
