"""The API on the compiled path answers byte for byte what it answers on graphql-core's executor.

Two apps run side by side on one seeded database (SQLite, and PostgreSQL under row-level
security when TEST_DATABASE_URL is set): one with COMPILED_EXECUTION off (the reference), one
with it on. Every operation goes to both with the same token and request id; status and body
bytes must be equal (data, nulls, errors with messages, paths, locations and extensions, key
order). Operations: every query in bench/operations and examples/operations, errors placed at
every depth by hand, and a generated corpus over the schema (tests/differential.py).

`DIFFERENTIAL_OPERATIONS` sets the corpus size (default 400 per database).
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from graphql import OperationDefinitionNode, OperationType, parse

from graphql_api.auth import Tokens
from graphql_api.cli import PROJECT_ROOT
from graphql_api.compiled import outcomes
from graphql_api.db import create_engine
from graphql_api.direct import answered as answered_directly
from graphql_api.guard import CACHEABLE_QUERY_CHARS
from graphql_api.schema import schema
from graphql_api.seed import seed_bulk
from tests.conftest import APP_ROLE, BACKENDS, _truncate_all, make_settings
from tests.differential import OperationGenerator, Seeded, seed
from tests.helpers import Api, serve

CORPUS_SIZE = int(os.environ.get("DIFFERENTIAL_OPERATIONS", "400"))
EXAMPLES = PROJECT_ROOT / "examples" / "operations"
OPERATION_FILES = sorted(
    [*(PROJECT_ROOT / "bench" / "operations").glob("*.graphql")]
    + [path for path in EXAMPLES.glob("*.graphql") if path.name != "fragments.graphql"]
)


def document_text(path: Path) -> str:
    """The file, with the shared fragments the examples spread."""
    text = path.read_text()
    if path.parent == EXAMPLES and "...TaskFields" in text:
        text += "\n" + (EXAMPLES / "fragments.graphql").read_text()
    return text


@dataclass
class World:
    app_url: str
    seeded: Seeded
    tokens: dict[str, str]


@pytest.fixture(scope="module", params=BACKENDS)
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> World:
    """A database seeded once per module: row-by-row users and the benchmark's bulk user."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("differential") / "differential.db"
        shutil.copy(request.getfixturevalue("_sqlite_template"), path)
        url = app_url = f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("_postgresql_migrated")
        _truncate_all(url)
        app_url = sa.make_url(url).set(username=APP_ROLE).render_as_string(hide_password=False)
    settings = make_settings(url)
    engine = create_engine(settings, request_limits=False)
    seeded = seed(engine)
    engine.dispose()
    seeded.users["bulk"] = seed_bulk(settings, users=1, tasks=60)[0]
    tokens = Tokens(settings)
    return World(app_url, seeded, {role: tokens.issue(user) for role, user in seeded.users.items()})


class Both:
    """The reference app and the compiled app, and a tally of how the latter answered."""

    def __init__(self, reference: Api, compiled: Api, world: World) -> None:
        self.reference = reference
        self.compiled = compiled
        self.world = world
        self.tally: Counter[str] = Counter()

    async def compare(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        user: str | None = "rich",
        operation_name: str | None = None,
        accept: str | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """Send to both; assert identical answers (status, body). Returns how the compiled app
        answered (`compiled`, `rerun`, `reference`, or `none` when execution was never
        reached) and the parsed body; `tally["direct"]` counts the queries the compiled app
        ran on the direct path (graphql_api.direct), which the reference app never takes."""
        payload: dict[str, Any] = {"query": query}
        if variables:
            payload["variables"] = variables
        if operation_name:
            payload["operationName"] = operation_name
        headers = {"X-Request-ID": "differential"}
        if user is not None:
            headers["Authorization"] = f"Bearer {self.world.tokens[user]}"
        if accept is not None:
            headers["Accept"] = accept
        with self.reference.count_statements() as reference_sql:
            expected = await self.reference.client.post("/graphql", json=payload, headers=headers)
        before, direct_before = Counter(outcomes), answered_directly[0]
        with self.compiled.count_statements() as compiled_sql:
            got = await self.compiled.client.post("/graphql", json=payload, headers=headers)
        self.tally["direct"] += answered_directly[0] - direct_before
        path = next((key for key, n in (Counter(outcomes) - before).items() if n), "none")
        assert (got.status_code, got.content) == (expected.status_code, expected.content), (
            f"answers differ ({path}) for\n{query}\nvariables: {variables}"
        )
        body = got.json()
        if path == "compiled" and not body.get("errors"):
            # Never more SQL than graphql-core's executor. (After an error, the compiled path
            # finishes the work graphql-core cancels: see graphql_api/compiled/run.py.)
            assert compiled_sql.count <= reference_sql.count, query
        self.tally[f"{path}, {'errors' if body.get('errors') else 'no errors'}"] += 1
        return path, body


@pytest.fixture
async def both(world: World) -> AsyncIterator[Both]:
    async with (
        serve(make_settings(world.app_url, compiled_execution=False)) as reference,
        serve(make_settings(world.app_url, compiled_execution=True)) as compiled,
    ):
        yield Both(reference, compiled, world)


def query_operations(path: Path) -> Iterator[tuple[str, OperationDefinitionNode]]:
    document = parse(document_text(path))
    for definition in document.definitions:
        if (
            isinstance(definition, OperationDefinitionNode)
            and definition.operation is OperationType.QUERY
        ):
            assert definition.name is not None
            yield definition.name.value, definition


def variables_for(operation: OperationDefinitionNode, seeded: Seeded) -> dict[str, Any]:
    """Values for the operation's required variables without defaults: ids of the right type."""
    kinds = {"task": "Task", "tag": "Tag", "conversation": "Conversation", "message": "Message"}
    values: dict[str, Any] = {}
    for definition in operation.variable_definitions or ():
        name = definition.variable.name.value
        if definition.default_value is None and name in {*kinds, "id"}:
            kind = kinds.get(name) or (
                "Conversation" if "Conversation" in str(operation.name) else "Task"
            )
            values[name] = seeded.ids[kind][2]
    return values


@pytest.mark.parametrize(
    "path", OPERATION_FILES, ids=lambda path: f"{path.parent.name}/{path.stem}"
)
async def test_the_repository_s_operations(both: Both, path: Path) -> None:
    operations = list(query_operations(path))
    if not operations:
        pytest.skip("no query: mutations and subscriptions run on graphql-core's executor")
    text = document_text(path)
    for name, operation in operations:
        variables = variables_for(operation, both.world.seeded)
        for user in ("rich", "bulk"):
            direct = both.tally["direct"]
            answered, body = await both.compare(text, variables, user=user, operation_name=name)
            assert both.tally["direct"] == direct + 1, name
            if user == "rich":
                assert answered == "compiled", (name, body)
                assert "errors" not in body, (name, body)
        for first in (0, 1, 3):
            await both.compare(text, {**variables, "first": first}, operation_name=name)


# One error each, placed at every depth: answered on the compiled path, the nearest nullable
# parent nulled (a root field, or the whole data).
ONE_ERROR = [
    # (a lookup of an id you do not have answers null without an error: not the one error)
    '{ task(id: "nope") { id } tags(first: 101) { totalCount } }',
    "{ tasks(first: 101) { totalCount } }",
    '{ me { id tasks(first: 2, after: "garbage") { nodes { id } } } }',
    '{ tag(id: "%(tag)s") { name tasks(first: 1000) { totalCount } } }',
    '{ conversation(id: "%(conversation)s") { title messages(last: -1) { totalCount } } }',
    '{ node(id: "%(tag)s") { id ... on Tag { tasks(first: 2, last: 2) { totalCount } } } }',
    '{ x: node(id: "%(task)s") { ... on Task { title } } '
    'y: node(id: "%(trashed_tag)s") { id ... on Tag { tasks(first: 1000) { totalCount } } } }',
    '{ conversations(first: 1) { nodes { messages(first: 3, before: "x") { totalCount } } } }',
    '{ tags(first: 1) { edges { node { tasks(after: "bad") { nodes { title } } } } } }',
    "{ me { tags(first: 1) { nodes { tasks(first: 1000) { totalCount } } } } }",
]


async def test_one_error_at_every_depth(both: Both) -> None:
    ids = both.world.seeded.ids
    values = {
        "tag": ids["Tag"][0],
        "task": ids["Task"][0],
        "conversation": ids["Conversation"][2],
        "trashed_tag": both.world.seeded.bad_ids[3],
    }
    for query in ONE_ERROR:
        answered, body = await both.compare(query % values)
        assert answered == "compiled", query
        assert len(body["errors"]) == 1, body


# Refused by the guard or by graphql-core before any field runs, on the direct path: the
# same answer, and with application/graphql-response+json the same 4xx status.
REFUSED = [
    ("{ tasks(first: 5) { totalCount } }", None, None, "UNAUTHENTICATED"),
    (
        "query($s: String) { tasks(filter: {search: $s}) { totalCount } }",
        {"s": "a\x00"},
        "rich",
        "BAD_USER_INPUT",
    ),
    ("query($n: Int!) { tasks(first: $n) { totalCount } }", None, "rich", "BAD_USER_INPUT"),
    ("query($n: Int!) { tasks(first: $n) { totalCount } }", {"n": "x"}, "rich", "BAD_USER_INPUT"),
    (
        "{ tasks(first: 100) { nodes { tags { tasks(first: 100) { nodes { tags { "
        "tasks(first: 100) { nodes { id } } } } } } } } }",
        None,
        "rich",
        "QUERY_TOO_COMPLEX",
    ),
]


@pytest.mark.parametrize("accept", [None, "application/graphql-response+json"])
async def test_refusals_on_the_direct_path(both: Both, accept: str | None) -> None:
    for query, variables, user, code in REFUSED:
        direct = both.tally["direct"]
        _, body = await both.compare(query, variables, user=user, accept=accept)
        assert both.tally["direct"] == direct + 1, query
        assert [error["extensions"]["code"] for error in body["errors"]] == [code], body


async def test_a_document_too_long_to_cache_takes_strawberry_s_path(both: Both) -> None:
    """The guard parses and validates such a document on every request; the direct path would
    have done it a second time."""
    query = "{ tasks(first: 2) { totalCount nodes { title } } }\n" + "#" * CACHEABLE_QUERY_CHARS
    direct = both.tally["direct"]
    answered, body = await both.compare(query)
    assert (answered, both.tally["direct"]) == ("compiled", direct)
    assert "errors" not in body, body


async def test_a_generated_corpus(both: Both, world: World) -> None:
    cursors = await collect_cursors(both)
    generator = OperationGenerator(schema._schema, world.seeded, cursors, seed_value=2024)
    for index in range(CORPUS_SIZE):
        query, variables = generator.operation()
        user = "bulk" if index % 7 == 6 else "rich"
        await both.compare(query, variables, user=user)
    tally = both.tally
    print(f"\n{world.app_url.split(':')[0]}: {sorted(tally.items())}")
    # The corpus reaches every path: compiled answers with and without errors, operations
    # handed to graphql-core after a second error, and requests that never reach execution.
    for key in ("compiled, no errors", "compiled, errors", "rerun, errors", "none, errors"):
        assert tally[key] > 0, (key, tally)
    answered = tally["compiled, no errors"] + tally["compiled, errors"]
    assert answered > CORPUS_SIZE // 2, tally


async def collect_cursors(both: Both) -> dict[str, list[str]]:
    """Cursors of every list (by the connection type they page) and of another ordering, from
    the reference app; and some that are not cursors at all."""
    ids = both.world.seeded.ids
    query = """query($c: ID!) {
      tasks(first: 4) { edges { cursor } }
      byTitle: tasks(first: 3, orderBy: [{field: TITLE, direction: DESC}]) { edges { cursor } }
      tags(first: 3) { edges { cursor node { tasks(first: 2) { edges { cursor } } } } }
      conversations(first: 3) { edges { cursor } }
      conversation(id: $c) { messages(first: 3) { edges { cursor } } }
    }"""
    _, body = await both.compare(query, {"c": ids["Conversation"][2]})
    data = body["data"]

    def cursors(connection: dict[str, Any]) -> list[str]:
        return [edge["cursor"] for edge in connection["edges"]]

    tag_tasks = [c for edge in data["tags"]["edges"] for c in cursors(edge["node"]["tasks"])]
    task_cursors = cursors(data["tasks"]) + tag_tasks
    return {
        "TaskConnection": task_cursors + cursors(data["byTitle"])[:1],
        "TagConnection": cursors(data["tags"]),
        "ConversationConnection": cursors(data["conversations"]),
        "MessageConnection": cursors(data["conversation"]["messages"]),
        "other": ["", "garbage", "eyJ4IjoxfQ", task_cursors[0] + "x", *cursors(data["byTitle"])],
    }
