"""CPU per request in-process: the reference executor against the compiled path, side by side.

    .venv/bin/python bench/cpu.py [--database-url URL] [--operations task_list,...]

Both apps are built in this process on the same PostgreSQL database (seeded with the load
benchmark's data shape if empty: users of 100 tasks, 8 tags, 3 conversations of 20 messages),
connected as an ordinary role so row-level security applies, and reached over ASGI like the
test suite does (HTTP parsing, FastAPI, Strawberry and its extensions included). Requests are
sequential, each as a different user; rounds alternate between the two apps. Two figures, at
the median round:

- request: `time.process_time()` per request, every thread of the process (the database
  driver's threads too, and the in-process HTTP client's share);
- execution: main-thread CPU (`time.thread_time()`) inside Strawberry's execution step, that is
  the executor, the resolvers and the event loop's work for them, without the driver's threads.

Ratios are the point: both apps run under the same load from the rest of the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from seeded import APP_ROLE, SERVER, prepare  # noqa: E402

from graphql_api.app import create_app  # noqa: E402
from graphql_api.auth import Tokens  # noqa: E402
from graphql_api.schema import ApiSchema  # noqa: E402
from graphql_api.settings import Settings  # noqa: E402

OPERATIONS = ROOT / "bench" / "operations"
SECRET = "cpu-secret-" + "s" * 40
VARIABLES: dict[str, dict[str, Any]] = {
    "task_list": {"first": 20},
    "tags_with_tasks": {"first": 20, "tasksFirst": 5},
    "conversations_with_last_messages": {"first": 20, "last": 5},
}


EXECUTION_CPU = [0.0]


def time_execution() -> None:
    """Count main-thread CPU spent in Strawberry's execution step (requests run one at a
    time, so nothing else runs on the main thread meanwhile but this request's callbacks)."""
    execute = ApiSchema._execute_operation

    async def timed(self: ApiSchema, *args: Any, **kwargs: Any) -> Any:
        started = time.thread_time()
        try:
            return await execute(self, *args, **kwargs)
        finally:
            EXECUTION_CPU[0] += time.thread_time() - started

    ApiSchema._execute_operation = timed  # type: ignore[method-assign]


class Client:
    def __init__(self, name: str, client: httpx.AsyncClient, tokens: list[str]) -> None:
        self.name = name
        self.client = client
        self.tokens = tokens

    async def run(self, body: dict[str, Any], count: int) -> tuple[float, float]:
        """CPU seconds per request over `count` sequential requests: whole, execution step."""
        tokens = self.tokens
        EXECUTION_CPU[0] = 0.0
        started = time.process_time()
        for index in range(count):
            headers = {"Authorization": f"Bearer {tokens[index % len(tokens)]}"}
            response = await self.client.post("/graphql", json=body, headers=headers)
            if response.status_code != 200 or b'"errors"' in response.content:
                raise RuntimeError(f"{self.name}: {response.text[:300]}")
        return (time.process_time() - started) / count, EXECUTION_CPU[0] / count


async def measure(args: argparse.Namespace) -> None:
    user_ids = prepare(args.database_url, args.users, SECRET)
    time_execution()
    app_url = (
        sa.make_url(args.database_url).set(username=APP_ROLE).render_as_string(hide_password=False)
    )
    tokens = [Tokens(Settings(_env_file=None, jwt_secret=SECRET)).issue(user) for user in user_ids]  # type: ignore[call-arg]
    async with AsyncExitStack() as stack:
        clients = []
        for name, compiled in (("reference", False), ("compiled", True)):
            settings = Settings(  # type: ignore[call-arg]
                _env_file=None,
                database_url=app_url,
                jwt_secret=SECRET,
                log_level="WARNING",
                compiled_execution=compiled,
                metrics=False,
            )
            app = create_app(settings)
            await stack.enter_async_context(app.router.lifespan_context(app))
            transport = httpx.ASGITransport(app=app)
            client = await stack.enter_async_context(
                httpx.AsyncClient(transport=transport, base_url="http://bench")
            )
            clients.append(Client(name, client, tokens))
        gc.collect()
        gc.freeze()
        print(
            f"{args.rounds} rounds x {args.requests} requests per app and operation, median round"
        )
        print(
            "| operation | request CPU ms: reference | compiled | ratio "
            "| execution CPU ms: reference | compiled | ratio |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for operation in args.operations.split(","):
            body = {
                "query": (OPERATIONS / f"{operation}.graphql").read_text(),
                "variables": VARIABLES.get(operation, {}),
            }
            for client in clients:  # warm-up: caches, plans, connections
                await client.run(body, args.requests)
            samples: dict[str, list[tuple[float, float]]] = {client.name: [] for client in clients}
            for _ in range(args.rounds):
                for client in clients:
                    samples[client.name].append(await client.run(body, args.requests))
            cells = [operation]
            for part in (0, 1):
                reference = statistics.median(s[part] for s in samples["reference"]) * 1000
                compiled = statistics.median(s[part] for s in samples["compiled"]) * 1000
                cells += [f"{reference:.2f}", f"{compiled:.2f}", f"{reference / compiled:.2f}"]
            print("| " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default=f"{SERVER}/graphql_api_cpu")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument(
        "--operations", default="task_list,tags_with_tasks,conversations_with_last_messages"
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=100)
    asyncio.run(measure(parser.parse_args()))


if __name__ == "__main__":
    main()
