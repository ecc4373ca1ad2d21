"""What a write pays for the change feed: statements and server time per mutation, with the
feed recorded and without it, on PostgreSQL and on SQLite (`make bench` runs it after
bench/live.py; alone:

    .venv/bin/python bench/write_cost.py [--database-url URL] [--backends postgresql,sqlite]

The app is built in this process, as bench/cpu.py builds it (`create_app` with its defaults:
asyncpg on PostgreSQL, connected as an ordinary role so row-level security applies; SQLite in
a file of its own), reached over ASGI by httpx, one request at a time. PostgreSQL's data is
bench/seeded.py's (users of 100 tasks, 8 tags, 3 conversations of 20 messages); SQLite's the
same shape, seeded afresh.

"Without the feed" is the code with its two feed-only parts switched off in this process (never
in graphql_api): the write transaction does not collect or flush change notes (`recording`
becomes a no-op, so `note` returns at once), and emptyTrash lets the foreign keys' cascade
delete a trashed conversation's messages again instead of deleting them first to learn their
ids. That is the code as it was before the feed, on the same database and process.

Each round runs each mutation `--wc-requests` times with the feed, then without (the order
alternates between rounds), so the rest of the shared machine weighs on both alike; a
request's figures are its process CPU (`time.process_time()`: every thread, the driver's too,
and the in-process HTTP client's share) and its wall time (PostgreSQL's own work included).
The figures are the median round's mean, and the median of each round's difference. What a
request needs beforehand (a live task to trash, a trashed one to restore, trash to empty) is
inserted directly, outside the timing. Statements are counted on the engine, transaction
control excluded (tests/helpers.py's counter), over a separate pass that also checks how many
feed rows each mutation writes.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from seeded import APP_ROLE, SERVER, prepare  # noqa: E402

from graphql_api import db  # noqa: E402
from graphql_api.app import create_app  # noqa: E402
from graphql_api.auth import Tokens  # noqa: E402
from graphql_api.cli import migrate  # noqa: E402
from graphql_api.models import CHANGES, CONVERSATIONS, MESSAGES, TAGS, TASKS, utcnow  # noqa: E402
from graphql_api.relay import encode_id  # noqa: E402
from graphql_api.seed import seed_bulk  # noqa: E402
from graphql_api.settings import Settings  # noqa: E402
from graphql_api.trash import repository as trash  # noqa: E402
from tests.helpers import StatementCounter  # noqa: E402

SECRET = "write-cost-secret-" + "s" * 40
TASK_LIST = (ROOT / "bench" / "operations" / "task_list.graphql").read_text()

# --- the switch ------------------------------------------------------------------------------

_RECORDING = db.recording
_DELETE_MESSAGES = trash._delete_messages_of_trashed


def _no_recording(_conn: Any) -> Any:
    return nullcontext()


def _no_message_delete(*_args: Any) -> None:
    """Before the feed, a trashed conversation's messages went by the cascade."""


def feed(on: bool) -> None:
    """Record the change feed (the code as it is), or not (the code as it was before it)."""
    db.recording = _RECORDING if on else _no_recording  # type: ignore[assignment]
    trash._delete_messages_of_trashed = _DELETE_MESSAGES if on else _no_message_delete  # type: ignore[assignment]


# --- the data each request needs -------------------------------------------------------------


@dataclass
class World:
    """One user's token and the objects the mutations act on."""

    user: str
    token: str
    task: uuid.UUID
    tags: tuple[uuid.UUID, uuid.UUID]
    conversation: uuid.UUID
    tagged: bool = False  # setTaskTags alternates between one tag and two
    made: int = 0


def _task(user: str, *, trashed: bool = False) -> dict[str, Any]:
    now = utcnow()
    return {
        "id": uuid.uuid4(),
        "user_id": user,
        "title": "write cost",
        "description": None,
        "completed": False,
        "completed_at": None,
        "priority": "medium",
        "due_date": None,
        "created_at": now,
        "updated_at": now,
        "deleted_at": now if trashed else None,
    }


def _conversation(user: str, *, trashed: bool = False) -> dict[str, Any]:
    now = utcnow()
    stamps = {"created_at": now, "updated_at": now, "deleted_at": now if trashed else None}
    return {"id": uuid.uuid4(), "user_id": user, "title": "write cost", **stamps}


def _message(user: str, conversation: uuid.UUID) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "user_id": user,
        "conversation_id": conversation,
        "role": "user",
        "content": "write cost",
        "created_at": utcnow(),
    }


def worlds(owner: sa.Engine, users: list[str], tokens: Tokens) -> list[World]:
    result = []
    with owner.begin() as conn:
        for user in users:
            task, conversation = _task(user), _conversation(user)
            now = utcnow()
            tags = [
                {
                    "id": uuid.uuid4(),
                    "user_id": user,
                    "name": f"write-cost-{uuid.uuid4().hex[:8]}",
                    "color": "#000000",
                    "created_at": now,
                    "updated_at": now,
                    "deleted_at": None,
                }
                for _ in range(2)
            ]
            conn.execute(sa.insert(TASKS), [task])
            conn.execute(sa.insert(TAGS), tags)
            conn.execute(sa.insert(CONVERSATIONS), [conversation])
            result.append(
                World(
                    user,
                    tokens.issue(user),
                    task["id"],
                    (tags[0]["id"], tags[1]["id"]),
                    conversation["id"],
                )
            )
    return result


# --- the mutations ---------------------------------------------------------------------------

Request = tuple[str, dict[str, Any]]


@dataclass
class Case:
    """An operation: `request` builds it for a world (after `prepare`, untimed, set it up);
    `cleanup` (untimed) removes what it left that the next ones must not see."""

    name: str
    request: Callable[[World, Any], Request]
    prepare: Callable[[sa.Connection, World], Any] = lambda _conn, _world: None
    cleanup: Callable[[sa.Connection, World, Any], None] = lambda _conn, _world, _made: None


def _insert(conn: sa.Connection, table: sa.Table, row: dict[str, Any]) -> uuid.UUID:
    conn.execute(sa.insert(table), [row])
    row_id: uuid.UUID = row["id"]
    return row_id


def _create_task(w: World, _made: Any) -> Request:
    w.made += 1
    return (
        "mutation($t: String!) { createTask(input: {title: $t}) { id } }",
        {"t": f"Write cost {w.made}"},
    )


def _update_task(w: World, _made: Any) -> Request:
    w.made += 1
    return (
        "mutation($id: ID!, $t: String!) { updateTask(id: $id, input: {title: $t}) { id } }",
        {"id": encode_id("Task", w.task), "t": f"Write cost {w.made}"},
    )


def _create_tag(w: World, _made: Any) -> Request:
    return (
        "mutation($n: String!) { createTag(input: {name: $n}) { id } }",
        {"n": f"wc-{uuid.uuid4().hex[:12]}"},
    )


def _set_task_tags(w: World, _made: Any) -> Request:
    w.tagged = not w.tagged  # a real change every time: one tag linked or unlinked
    tags = w.tags if w.tagged else w.tags[:1]
    return (
        "mutation($id: ID!, $tags: [ID!]!) { setTaskTags(taskId: $id, tagIds: $tags) { id } }",
        {"id": encode_id("Task", w.task), "tags": [encode_id("Tag", t) for t in tags]},
    )


def _delete_task(_w: World, made: uuid.UUID) -> Request:
    return "mutation($id: ID!) { deleteTask(id: $id) { id } }", {"id": encode_id("Task", made)}


def _restore_task(_w: World, made: uuid.UUID) -> Request:
    return "mutation($id: ID!) { restoreTask(id: $id) { id } }", {"id": encode_id("Task", made)}


def _post_message(w: World, _made: Any) -> Request:
    return (
        "mutation($c: ID!) { postMessage(conversationId: $c, "
        'input: {role: USER, content: "write cost"}) { id } }',
        {"c": encode_id("Conversation", w.conversation)},
    )


def _trash(conn: sa.Connection, w: World) -> None:
    """A trashed task, and a trashed conversation with one message: emptyTrash deletes the
    three (and writes three feed rows)."""
    _insert(conn, TASKS, _task(w.user, trashed=True))
    conversation = _insert(conn, CONVERSATIONS, _conversation(w.user, trashed=True))
    _insert(conn, MESSAGES, _message(w.user, conversation))


def _drop_task(conn: sa.Connection, _w: World, made: uuid.UUID) -> None:
    conn.execute(sa.delete(TASKS).where(TASKS.c.id == made))


CASES = [
    Case("createTask", _create_task),
    Case("updateTask", _update_task),
    Case("createTag", _create_tag),
    Case("setTaskTags", _set_task_tags),
    Case(
        "deleteTask",
        _delete_task,
        lambda conn, w: _insert(conn, TASKS, _task(w.user)),
        _drop_task,  # out of the trash, so that emptyTrash finds only its own
    ),
    Case(
        "restoreTask",
        _restore_task,
        lambda conn, w: _insert(conn, TASKS, _task(w.user, trashed=True)),
    ),
    Case("postMessage", _post_message),
    Case(
        "emptyTrash (1 task, 1 conversation, 1 message)",
        lambda _w, _m: ("mutation { emptyTrash }", {}),
        _trash,
    ),
    Case("task_list (a read)", lambda _w, _m: (TASK_LIST, {"first": 20})),
]


# --- measuring -------------------------------------------------------------------------------


@dataclass
class Figures:
    statements: dict[bool, int] = field(default_factory=dict)
    feed_rows: dict[bool, float] = field(default_factory=dict)
    cpu: dict[bool, list[float]] = field(default_factory=lambda: {True: [], False: []})
    wall: dict[bool, list[float]] = field(default_factory=lambda: {True: [], False: []})


class Bench:
    def __init__(self, client: httpx.AsyncClient, owner: sa.Engine, engine: sa.Engine) -> None:
        self.client = client
        self.owner = owner  # setup and checks, outside the app
        self.engine = engine  # the app's, for counting its statements

    async def send(self, world: World, request: Request) -> None:
        query, variables = request
        response = await self.client.post(
            "/graphql",
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {world.token}"},
        )
        if response.status_code != 200 or b'"errors"' in response.content:
            raise RuntimeError(response.text[:300])

    @contextmanager
    def prepared(self, case: Case, world: World) -> Iterator[Any]:
        with self.owner.begin() as conn:
            made = case.prepare(conn, world)
        yield made
        with self.owner.begin() as conn:
            case.cleanup(conn, world, made)

    async def run(self, case: Case, worlds: list[World], count: int) -> tuple[float, float]:
        """Mean CPU and wall ms of `count` requests, each as the next world's user."""
        cpu = wall = 0.0
        for index in range(count):
            world = worlds[index % len(worlds)]
            with self.prepared(case, world) as made:
                request = case.request(world, made)
                started_cpu, started = time.process_time(), time.perf_counter()
                await self.send(world, request)
                cpu += time.process_time() - started_cpu
                wall += time.perf_counter() - started
        return cpu * 1000 / count, wall * 1000 / count

    def feed_length(self) -> int:
        with self.owner.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(CHANGES)).scalar_one()

    async def count(self, case: Case, worlds: list[World], on: bool, figures: Figures) -> None:
        """Statements per request (the same for each, or the bench is wrong), feed rows."""
        feed(on)
        counts = set()
        before = self.feed_length()
        for world in worlds[:3]:
            with self.prepared(case, world) as made:
                request = case.request(world, made)
                with StatementCounter(self.engine) as counter:
                    await self.send(world, request)
            counts.add(counter.count)
        if len(counts) != 1:
            raise RuntimeError(f"{case.name}: statements vary: {counts}")
        figures.statements[on] = counts.pop()
        figures.feed_rows[on] = (self.feed_length() - before) / 3


async def measure_backend(
    label: str, owner_url: str, app_url: str, users: list[str], options: Options
) -> dict[str, Figures]:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=app_url,
        jwt_secret=SECRET,
        log_level="WARNING",
        metrics=False,
        graphiql=False,
    )
    owner = sa.create_engine(owner_url)
    the_worlds = worlds(owner, users[: options.users], Tokens(settings))
    results = {case.name: Figures() for case in CASES}
    app = create_app(settings)
    try:
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(app.router.lifespan_context(app))
            client = await stack.enter_async_context(
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench")
            )
            bench = Bench(client, owner, app.state.services.database.engine)
            for case in CASES:
                for on in (True, False):
                    await bench.count(case, the_worlds, on, results[case.name])
            for on in (True, False):  # warm-up: plans, caches, connections
                feed(on)
                for case in CASES:
                    await bench.run(case, the_worlds, options.requests)
            gc.collect()
            gc.freeze()
            for round_ in range(options.rounds):
                for case in CASES:
                    for on in (True, False) if round_ % 2 == 0 else (False, True):
                        feed(on)
                        cpu, wall = await bench.run(case, the_worlds, options.requests)
                        results[case.name].cpu[on].append(cpu)
                        results[case.name].wall[on].append(wall)
                print(f"[write cost] {label}: round {round_ + 1}/{options.rounds}", file=sys.stderr)
    finally:
        feed(True)
        gc.unfreeze()
        owner.dispose()
    return results


def _pair(values: dict[bool, list[float]]) -> str:
    off, on = statistics.median(values[False]), statistics.median(values[True])
    diff = statistics.median(a - b for a, b in zip(values[True], values[False], strict=True))
    return f"{off:.2f} | {on:.2f} | {diff:+.2f}"


def report(label: str, results: dict[str, Figures]) -> list[str]:
    lines = [
        f"\n### {label}\n",
        "| operation | statements without / with | feed rows | CPU ms without | with | diff "
        "| wall ms without | with | diff |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, f in results.items():
        lines.append(
            f"| {name} | {f.statements[False]} / {f.statements[True]} | "
            f"{f.feed_rows[True]:g} | {_pair(f.cpu)} | {_pair(f.wall)} |"
        )
    return lines


# --- the backends ----------------------------------------------------------------------------


def postgresql(url: str, options: Options) -> list[str]:
    users = prepare(url, max(options.users, 20), SECRET)
    app_url = sa.make_url(url).set(username=APP_ROLE).render_as_string(hide_password=False)
    results = asyncio.run(measure_backend("postgresql", url, app_url, users, options))
    return report("PostgreSQL (asyncpg, row-level security on)", results)


def sqlite(options: Options) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/write-cost.db"
        settings = Settings(_env_file=None, database_url=url, jwt_secret=SECRET)  # type: ignore[call-arg]
        migrate(settings)
        users = seed_bulk(settings, users=options.users, tasks=100)
        results = asyncio.run(measure_backend("sqlite", url, url, users, options))
    return report("SQLite (a file; one writer at a time)", results)


@dataclass(frozen=True)
class Options:
    users: int  # whose requests take turns
    rounds: int
    requests: int  # per operation, round and setting
    backends: list[str]


def measure(url: str, args: argparse.Namespace) -> str:
    """The report: PostgreSQL on the database at `url` (as its owner), and SQLite."""
    options = Options(args.wc_users, args.wc_rounds, args.wc_requests, args.wc_backends.split(","))
    lines = [
        f"{options.rounds} rounds x {options.requests} requests per operation, with the feed "
        "and without it in turn; ms per request, median round (diff: median of the rounds' "
        "differences); feed rows: written per request with the feed (none without)",
    ]
    if "postgresql" in options.backends:
        lines += postgresql(url, options)
    if "sqlite" in options.backends:
        lines += sqlite(options)
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wc-backends", default="postgresql,sqlite", help="write cost")
    parser.add_argument("--wc-users", type=int, default=20, help="write cost: users in turn")
    parser.add_argument("--wc-rounds", type=int, default=15, help="write cost")
    parser.add_argument("--wc-requests", type=int, default=20, help="write cost: per round")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default=f"{SERVER}/graphql_api_write_cost")
    add_arguments(parser)
    args = parser.parse_args()
    print(measure(args.database_url, args))


if __name__ == "__main__":
    main()
