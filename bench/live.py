"""What live updates cost: `make bench` runs it after the load benchmark (`python bench/live.py`
runs it alone).

- Idle: one API process, 1,000 users each with a WebSocket and a `changes` subscription
  waiting. The process's memory before and after, its CPU over a minute at rest, and the
  PostgreSQL connections it holds meanwhile.
- Latency: 100 subscribers while wrk drives the task-list load and a writer commits a task for
  one of them at a steady rate: from the change's commit (`changes.committed_at`, written by the
  committing transaction) to the moment its subscriber's client has the message, p50 and p99;
  and what the load gets done meanwhile, beside the same load without subscribers.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import resource
import sys
import time
from pathlib import Path

import httpx
import sqlalchemy as sa
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run

from graphql_api.auth import Tokens
from graphql_api.settings import Settings

CHANGES = "subscription { changes { cursor node { ... on Task { title } } } }"
CREATE = "mutation($t: String!) { createTask(input: {title: $t}) { id } }"


async def subscribe(url: str, token: str) -> websockets.ClientConnection:
    """A connection with a `changes` subscription, from now on."""
    connection = await websockets.connect(
        url, subprotocols=["graphql-transport-ws"], max_size=None, open_timeout=60
    )
    payload = {"Authorization": f"Bearer {token}"}
    await connection.send(json.dumps({"type": "connection_init", "payload": payload}))
    assert json.loads(await connection.recv())["type"] == "connection_ack"
    await connection.send(
        json.dumps({"id": "1", "type": "subscribe", "payload": {"query": CHANGES}})
    )
    return connection


async def subscriptions(api: run.Target) -> float:
    async with httpx.AsyncClient() as client:
        text = (await client.get(api.url.replace("/graphql", "/metrics"))).text
    line = next(line for line in text.splitlines() if line.startswith("graphql_subscriptions "))
    return float(line.split()[1])


async def until_subscriptions(api: run.Target, count: int) -> None:
    for _ in range(600):
        if await subscriptions(api) >= count:
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"the API never had {count} subscriptions")


def api_connections(url: str) -> dict[str, int]:
    """The API's connections to PostgreSQL, by state (LISTEN's is idle, outside any pool)."""
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT state, count(*) FROM pg_stat_activity WHERE usename = :role GROUP BY state"
            ),
            {"role": run.API_LOGIN},
        ).all()
    engine.dispose()
    return {str(state): count for state, count in rows}


async def idle_cost(api: run.Target, tokens: list[str], url: str, rest: int) -> list[str]:
    ws_url = api.url.replace("http://", "ws://")
    pids = api.pids()
    before = run.rss_mib(pids)
    connections = []
    for start in range(0, len(tokens), 50):
        connections += await asyncio.gather(*(subscribe(ws_url, t) for t in tokens[start:][:50]))
    await until_subscriptions(api, len(tokens))
    await asyncio.sleep(5)  # the subscriptions' first reads are over
    after = run.rss_mib(pids)
    held = api_connections(url)
    cpu_before = sum(run.cpu_by_pid(pids).values())
    started = time.monotonic()
    await asyncio.sleep(rest)
    cpu_at_rest = sum(run.cpu_by_pid(pids).values()) - cpu_before
    elapsed = time.monotonic() - started
    await asyncio.gather(*(c.close() for c in connections))
    return [
        f"\n### {len(tokens):,} idle subscribers in one process\n",
        f"- memory (RSS): {before:,.0f} MiB before, {after:,.0f} MiB with them: "
        f"{(after - before) * 1024 / len(tokens):,.1f} KiB per subscriber "
        "(its connection, its handler and its subscription)",
        f"- CPU at rest: {cpu_at_rest * 1000 / elapsed:,.1f} ms per second "
        f"({cpu_at_rest * 100 / elapsed:.2f}% of a core) over {elapsed:.0f} s, uvicorn's "
        "keep-alive pings included (one per connection every 20 s)",
        f"- PostgreSQL connections of the API meanwhile, by state: {held} (the pool's idle "
        "connections, and the one that LISTENs: none is held by a subscription)",
    ]


def seq_of(cursor: str) -> int:
    return int(base64.urlsafe_b64decode(cursor).decode().removeprefix("feed:"))


async def receive(
    connection: websockets.ClientConnection, user: str, arrivals: list[tuple[str, int, float]]
) -> None:
    async for raw in connection:
        message = json.loads(raw)
        if message.get("type") == "next":
            cursor = message["payload"]["data"]["changes"]["cursor"]
            arrivals.append((user, seq_of(cursor), time.time()))


async def write(api: run.Target, tokens: dict[str, str], rate: float, seconds: float) -> int:
    """Commit a task for one subscriber's user `rate` times a second (each on time, however
    long the one before takes); how many."""
    users = list(tokens)
    count = int(rate * seconds)
    async with httpx.AsyncClient(timeout=60) as client:

        async def one(n: int) -> None:
            await asyncio.sleep(n / rate)
            response = await client.post(
                api.url,
                json={"query": CREATE, "variables": {"t": f"Live {n}"}},
                headers={"Authorization": f"Bearer {tokens[users[n % len(users)]]}"},
            )
            response.raise_for_status()

        await asyncio.gather(*(one(n) for n in range(count)))
    return count


def committed_at(url: str, arrivals: list[tuple[str, int, float]]) -> dict[tuple[str, int], float]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT user_id, seq, extract(epoch FROM committed_at) FROM changes "
                "WHERE user_id = ANY(:users)"
            ),
            {"users": sorted({user for user, _, _ in arrivals})},
        ).all()
    engine.dispose()
    return {(user, seq): float(at) for user, seq, at in rows}


async def latency(
    api: run.Target, tokens: dict[str, str], url: str, args: argparse.Namespace, *, load: bool
) -> tuple[list[float], float]:
    """Commit-to-client latencies (ms) of `args.rate` commits a second for `args.duration`
    seconds, with or without wrk's task-list load meanwhile; and the load's req/s."""
    ws_url = api.url.replace("http://", "ws://")
    connections = [await subscribe(ws_url, token) for token in tokens.values()]
    await until_subscriptions(api, len(connections))
    arrivals: list[tuple[str, int, float]] = []
    readers = [
        asyncio.create_task(receive(c, user, arrivals))
        for c, user in zip(connections, tokens, strict=True)
    ]
    wrk = asyncio.to_thread(run.wrk, api, "task_list", args, args.duration) if load else None
    loading = asyncio.create_task(wrk) if wrk else None
    written = await write(api, tokens, args.rate, args.duration - 2)
    rps = (await loading)["rps"] if loading else 0.0
    for _ in range(300):  # the last ones on their way
        if len(arrivals) >= written:
            break
        await asyncio.sleep(0.1)
    for reader in readers:
        reader.cancel()
    await asyncio.gather(*(c.close() for c in connections))
    commits = committed_at(url, arrivals)
    return [(at - commits[(user, seq)]) * 1000 for user, seq, at in arrivals], rps


def summary(latencies: list[float]) -> str:
    return (
        f"p50 {percentile(latencies, 0.5):,.1f} ms, p99 {percentile(latencies, 0.99):,.1f} ms, "
        f"max {max(latencies):,.1f} ms ({len(latencies):,} changes)"
    )


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def measure(url: str, args: argparse.Namespace) -> str:
    """Start an API process on the bench database (`url`), measure, stop it; the report."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # a socket per subscriber
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    users = run.bench_users(url, max(args.idle, args.subscribers + args.sample_users))
    tokens = Tokens(Settings(database_url=url, jwt_secret=run.SECRET))
    api = run.start_api("api-live", url, 1, {})
    try:
        idle = [tokens.issue(user) for user in users.ids[: args.idle]]
        lines = asyncio.run(idle_cost(api, idle, url, rest=60))
        subscribers = {user: tokens.issue(user) for user in users.ids[: args.subscribers]}
        loading = users.ids[args.subscribers :][: args.sample_users]
        run.prepare_requests(
            [api], run.Users(loading, users.light, users.heavy), tokens, ["task_list"]
        )
        alone = run.wrk(api, "task_list", args, args.duration)["rps"]
        at_rest, _ = asyncio.run(latency(api, subscribers, url, args, load=False))
        loaded, with_live = asyncio.run(latency(api, subscribers, url, args, load=True))
    finally:
        api.stop()
        forget_live_tasks(url, users.ids[: args.subscribers])
    lines += [
        f"\n### Commit to client, {args.subscribers} subscribers\n",
        f"{args.rate:g} commits a second, each a task created for one subscriber's user; from "
        "the change's commit to its arrival in the client:\n",
        f"- under the task-list load (wrk -c{args.connections}, {args.duration} s): "
        f"{summary(loaded)}",
        f"- without it: {summary(at_rest)}",
        f"- task_list under the commits and their deliveries: {with_live:,.0f} req/s; alone, "
        f"just before: {alone:,.0f} req/s",
    ]
    return "\n".join(lines)


def forget_live_tasks(url: str, users: list[str]) -> None:
    """Delete the tasks the latency runs created (and the feed's record of them), so the load
    benchmark's data set stays as it was seeded: the newest tasks are on every first page."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for statement in (
            "DELETE FROM tasks WHERE user_id = ANY(:users) AND title LIKE 'Live %'",
            "DELETE FROM changes WHERE user_id = ANY(:users)",
        ):
            conn.execute(sa.text(statement), {"users": users})
    engine.dispose()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--idle", type=int, default=1000, help="idle subscribers")
    parser.add_argument("--subscribers", type=int, default=100, help="for the latency")
    parser.add_argument("--rate", type=float, default=20, help="commits per second, latency")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--reseed", action="store_true")
    parser.add_argument("--database", help="the bench database's name (default: by size)")
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--sample-users", type=int, default=500, help="users of the load")
    add_arguments(parser)
    args = parser.parse_args()
    run.WORK.mkdir(parents=True, exist_ok=True)
    url = run.prepare_database(args)
    print(measure(url, args))


if __name__ == "__main__":
    main()
