"""The same statements, three ways of sending them: what the database driver and the trips to
its thread cost per request, in-process CPU (`time.process_time`).

    .venv/bin/pip install asyncpg    # not a dependency of the API: only for this comparison
    .venv/bin/python bench/drivers.py [--operation task_list]

The statements are captured from one real request of the operation (bench/cpu_data.py's
database and users; run it once first), then replayed, each way in turn, round after round:

- psycopg2 with a trip to a worker thread per statement (the API's request path before);
- psycopg2 with one trip for all of them (what batching the reads of a request would reach);
- asyncpg on the event loop (an async driver for the request path).

Each replay is a transaction as the API runs it: set_config and the user check, the reads,
rollback. Run under uvloop, as `graphql-api serve` is.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import functools
import json
import re
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATABASE = "graphql_api_cpu_data"
APP_ROLE = "bench_app"
VARIABLES: dict[str, dict[str, Any]] = {
    "task_list": {"first": 20},
    "tags_with_tasks": {"first": 20, "tasksFirst": 5},
    "conversations_with_last_messages": {"first": 20, "last": 5},
}
Statement = tuple[str, dict[str, Any]]


async def capture(operation: str, user: str) -> list[Statement]:
    """The statements (with parameters) the API sends for one request of `operation`."""
    import httpx
    from sqlalchemy import event

    from bench.cpu_data import SECRET
    from graphql_api.app import create_app
    from graphql_api.auth import Tokens
    from graphql_api.settings import Settings

    url = f"postgresql+psycopg2://{APP_ROLE}@127.0.0.1:5432/{DATABASE}"
    settings = Settings(_env_file=None, database_url=url, jwt_secret=SECRET, metrics=False)  # type: ignore[call-arg]
    app = create_app(settings)
    sent: list[Statement] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append((statement, dict(parameters or {})))

    event.listen(app.state.services.database.engine, "before_cursor_execute", record)
    query = (ROOT / "bench" / "operations" / f"{operation}.graphql").read_text()
    headers = {"Authorization": f"Bearer {Tokens(settings).issue(user)}"}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            body = {"query": query, "variables": VARIABLES[operation]}
            response = await client.post("/graphql", json=body, headers=headers)
            assert b'"errors"' not in response.content, response.text
    return sent


def numbered(statement: str, parameters: dict[str, Any]) -> tuple[str, list[Any]]:
    """A pyformat statement as asyncpg takes it: `$1`, `$2`... and the values in order."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    text = re.sub(r"%\((\w+)\)s", number, statement).replace("%%", "%")
    return text, [parameters[name] for name in names]


async def compare(operation: str, rounds: int, requests: int) -> None:
    import asyncpg
    import psycopg2
    import psycopg2.extras

    users = json.loads((ROOT / "bench" / ".work" / "cpu-data-users.json").read_text())
    statements = await capture(operation, users[7])
    psycopg2.extras.register_uuid()  # as SQLAlchemy's psycopg2 dialect does
    connection = psycopg2.connect(f"host=127.0.0.1 user={APP_ROLE} dbname={DATABASE}")
    threads = ThreadPoolExecutor(4)
    loop = asyncio.get_running_loop()

    def one(statement: str, parameters: dict[str, Any]) -> None:
        cursor = connection.cursor()
        cursor.execute(statement, parameters)
        cursor.fetchall()
        cursor.close()

    def every() -> None:
        for statement, parameters in statements:
            one(statement, parameters)

    async def trip(fn: Callable[..., Any], *args: Any) -> Any:
        context = contextvars.copy_context()  # as Database.run does
        return await loop.run_in_executor(threads, functools.partial(context.run, fn, *args))

    async def trip_per_statement() -> None:
        for statement, parameters in statements:
            await trip(one, statement, parameters)
        await trip(connection.rollback)

    async def one_trip() -> None:
        await trip(every)
        await trip(connection.rollback)

    native = await asyncpg.connect(f"postgresql://{APP_ROLE}@127.0.0.1/{DATABASE}")
    replays = [numbered(statement, parameters) for statement, parameters in statements]
    # asyncpg takes one statement at a time: the API's "set_config; user check" is two.
    first, check = replays[0][0].split("; ")
    user = replays[0][1]

    async def on_asyncpg() -> None:
        transaction = native.transaction()
        await transaction.start()
        await native.fetchval(first, *user)
        await native.fetchval(check, *user)
        for text, values in replays[1:]:
            await native.fetch(text, *values)
        await transaction.rollback()

    ways: dict[str, Callable[[], Awaitable[None]]] = {
        "psycopg2, a thread trip per statement": trip_per_statement,
        "psycopg2, one thread trip": one_trip,
        "asyncpg on the event loop": on_asyncpg,
    }
    samples: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(rounds):
        for name, way in ways.items():
            started = time.process_time()
            for _ in range(requests):
                await way()
            samples[name].append((time.process_time() - started) / requests * 1000)
    print(f"{operation}: {len(statements)} statements; {rounds} rounds x {requests} requests")
    print("| driver | CPU ms per request: median round (min) |")
    print("| --- | --- |")
    for name, values in samples.items():
        print(f"| {name} | {statistics.median(values):.2f} ({min(values):.2f}) |")
    connection.close()
    await native.close()


def main() -> None:
    import uvloop

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--operation", default="task_list", choices=sorted(VARIABLES))
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    uvloop.run(compare(args.operation, args.rounds, args.requests))


if __name__ == "__main__":
    main()
