"""Abuse limits, attacked at the boundary: just under each limit passes, just over is refused
with a clear error, before any resolver runs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from graphql import (
    FragmentDefinitionNode,
    FragmentSpreadNode,
    Node,
    OperationDefinitionNode,
    Visitor,
    get_introspection_query,
    parse,
    print_ast,
    visit,
)

from graphql_api.cli import PROJECT_ROOT
from graphql_api.settings import Settings
from tests.conftest import Backend, make_settings
from tests.helpers import Account, Api, serve

LIMITS = {
    "max_depth": 4,
    "max_aliases": 3,
    "max_tokens": 40,
    "max_directives": 2,
    "max_cost": 50,
    "max_field_repeats": 36,
    "max_body_bytes": 2048,
}


@pytest.fixture
async def limited(backend: Backend) -> AsyncIterator[Api]:
    async with serve(make_settings(backend.app_url, **LIMITS)) as api:
        yield api


@pytest.fixture
async def user(limited: Api) -> Account:
    return await limited.sign_up()


def refused(response: Any, words: str) -> bool:
    return response.data is None and any(words in e["message"] for e in response.errors)


async def test_depth(limited: Api, user: Account) -> None:
    # Depth counts the levels below the root field: tasks is 0, the deepest `id` here is 4.
    at_limit = "{ tasks(first: 1) { nodes { subtasks { subtasks { id } } } } }"
    over = "{ tasks(first: 1) { nodes { subtasks { subtasks { subtasks { id } } } } } }"
    assert (await limited.execute(at_limit, as_user=user)).ok()
    assert refused(await limited.execute(over, as_user=user), "depth")


async def test_aliases(limited: Api, user: Account) -> None:
    at_limit = "{ a: me { id } b: me { id } c: me { id } }"
    over = "{ a: me { id } b: me { id } c: me { id } d: me { id } }"
    assert (await limited.execute(at_limit, as_user=user)).ok()
    assert refused(await limited.execute(over, as_user=user), "aliases")


async def test_tokens(limited: Api, user: Account) -> None:
    # `{ me { id ... } }` is 4 tokens plus one per `id`, and graphql-core counts the end too.
    at_limit = "{ me { " + " ".join(["id"] * 35) + " } }"  # 40 tokens
    over = "{ me { " + " ".join(["id"] * 36) + " } }"  # 41 tokens
    assert (await limited.execute(at_limit, as_user=user)).ok()
    assert refused(await limited.execute(over, as_user=user), "token")


async def test_directives(limited: Api, user: Account) -> None:
    at_limit = "{ me { id @include(if: true) email @skip(if: false) } }"
    over = "{ me { id @include(if: true) email @skip(if: false) name @include(if: true) } }"
    assert (await limited.execute(at_limit, as_user=user)).ok()
    response = await limited.execute(over, as_user=user)
    assert refused(response, "directives")
    assert response.codes == ["QUERY_TOO_COMPLEX"]


async def test_cost_counts_page_sizes(limited: Api, user: Account) -> None:
    # tasks (1) + first x (nodes 1 + id 1 + title 1 + tags (1 + 5 x name 1)) = 1 + 9n
    query = "query($n: Int) { tasks(first: $n) { nodes { id title tags { name } } } }"
    assert (await limited.execute(query, {"n": 5}, as_user=user)).ok()  # cost 46
    response = await limited.execute(query, {"n": 6}, as_user=user)  # cost 55
    assert refused(response, "more than the limit of 50")
    assert response.codes == ["QUERY_TOO_COMPLEX"]
    assert response.errors[0]["extensions"]["cost"] == 55


async def test_body_size(limited: Api, user: Account) -> None:
    padding = "#" + "x" * 1500 + "\n"
    small = await limited.execute(padding + "{ me { id } }", as_user=user)
    assert small.ok()
    response = await limited.client.post(
        "/graphql",
        json={"query": padding * 2 + "{ me { id } }"},
        headers={"Authorization": f"Bearer {user.token}"},
    )
    assert response.status_code == 413


async def test_batched_requests_are_refused(limited: Api, user: Account) -> None:
    response = await limited.client.post(
        "/graphql",
        json=[{"query": "{ me { id } }"}, {"query": "{ me { id } }"}],
        headers={"Authorization": f"Bearer {user.token}"},
    )
    assert response.status_code == 400


# --- the defaults fit what the repository itself sends ---------------------------------------


def repository_operations() -> list[tuple[str, str | None]]:
    """(document, operation name) of every operation the repository sends: the benchmark's,
    one per file, and the examples', which share fragments across files: each with the
    fragments it spreads, as a client (the codegen's typed documents) sends it."""
    bench = [
        (path.read_text(), None)
        for path in sorted((PROJECT_ROOT / "bench" / "operations").glob("*.graphql"))
    ]
    examples = parse(
        "\n".join(
            path.read_text()
            for path in sorted((PROJECT_ROOT / "examples" / "operations").glob("*.graphql"))
        )
    )
    fragments = {
        d.name.value: d for d in examples.definitions if isinstance(d, FragmentDefinitionNode)
    }
    operations = [
        d for d in examples.definitions if isinstance(d, OperationDefinitionNode) and d.name
    ]
    return bench + [
        (_with_fragments(operation, fragments), operation.name.value)
        for operation in operations
        if operation.name
    ]


def _with_fragments(
    operation: OperationDefinitionNode, fragments: dict[str, FragmentDefinitionNode]
) -> str:
    """The operation's text and the fragments it spreads, directly or through others."""
    needed: dict[str, FragmentDefinitionNode] = {}
    pending: list[Node] = [operation]
    while pending:
        for spread in _spreads(pending.pop()):
            if spread not in needed:
                needed[spread] = fragments[spread]
                pending.append(fragments[spread])
    return "\n".join(print_ast(node) for node in [operation, *needed.values()])


def _spreads(node: Node) -> list[str]:
    names: list[str] = []

    class Spreads(Visitor):
        def enter_fragment_spread(self, spread: FragmentSpreadNode, *_: Any) -> None:
            names.append(spread.name.value)

    visit(node, Spreads())
    return names


@pytest.mark.parametrize(("document", "name"), repository_operations())
async def test_every_repository_operation_fits_the_default_limits(
    api: Api, document: str, name: str | None
) -> None:
    account = await api.sign_up()
    response = await api.execute(document, as_user=account, operation_name=name)
    limit_errors = [
        error
        for error in response.errors
        if error.get("extensions", {}).get("code")
        in {"QUERY_TOO_COMPLEX", "GRAPHQL_VALIDATION_FAILED", "GRAPHQL_PARSE_FAILED"}
    ]
    assert limit_errors == []


async def test_introspection_fits_the_default_limits(api: Api) -> None:
    query = get_introspection_query(descriptions=True, input_value_deprecation=True)
    assert (await api.execute(query)).ok()["__schema"]["queryType"]["name"] == "Query"


def test_the_default_depth_is_tight() -> None:
    """The deepest operation in the repository decides the default depth (plus headroom 2)."""
    assert Settings(_env_file=None).max_depth <= 8  # type: ignore[call-arg]


def test_a_page_of_changes_costs_its_page_size_once() -> None:
    """`changes(first)` sizes the page; the list of changes inside it is that page (as a
    connection's `nodes` are), and its default page is 100, not the connections' 20."""
    from graphql_api.limits import operation_cost
    from graphql_api.schema import schema

    def cost(query: str) -> int:
        operation = parse(query).definitions[0]
        assert isinstance(operation, OperationDefinitionNode)
        return operation_cost(schema._schema, operation, {}, {})

    assert cost("{ changes { cursor changes { id kind } } }") == 1 + 100 * (1 + 1 + 2)
    assert cost("{ changes(first: 10) { cursor changes { id kind } } }") == 1 + 10 * (1 + 1 + 2)
