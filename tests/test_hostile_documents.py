"""Documents built to cost the server much more than they cost to send. Each is refused or
answered after a few milliseconds of CPU, and the process stays responsive meanwhile.

The costs are read from the server process's own CPU time (/proc), not from wall time, so a
busy machine does not make these tests flaky.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from subprocess import Popen

import httpx
import pytest

from tests.conftest import Backend
from tests.helpers import Account, Api
from tests.live import cpu_seconds, live_server

CPU_BUDGET_SECONDS = 0.05
"""What a hostile document may cost the server, all of the request included."""


def fan_out(n: int, *, on: str, root: str, leaf: str, operation: str = "query") -> str:
    """`F0` spreads `F1` twice, `F1` spreads `F2` twice...: 2^n paths for a naive walk."""
    fragments = [f"fragment F{i} on {on} {{ ...F{i + 1} ...F{i + 1} }}" for i in range(n)]
    fragments.append(f"fragment F{n} on {on} {{ {leaf} }}")
    return f"{operation} {{ {root} }} " + " ".join(fragments)


FAN_OUTS = {
    "user": {"on": "User", "root": "me { ...F0 }", "leaf": "id"},
    "query": {"on": "Query", "root": "...F0", "leaf": "me { id }"},
    "mutation": {"on": "Mutation", "root": "...F0", "leaf": "deleteMe", "operation": "mutation"},
}

REPEATED = {
    # graphql-core's OverlappingFieldsCanBeMerged compares same-named fields pairwise:
    # about 100 ms for these on today's machines when nothing refuses them first.
    "same leaf": "{ me { " + " ".join(["id"] * 990) + " } }",
    "same subtree": "{ " + " ".join(["tasks { nodes { id } }"] * 110) + " }",
    "different arguments": "{ "
    + " ".join(f"tasks(first: {i}) {{ totalCount }}" for i in range(120))
    + " }",
    "repeated through fragments": "{ me { ...A } } fragment A on User { "
    + " ".join(f"...B{i}" for i in range(100))
    + " } "
    + " ".join(f"fragment B{i} on User {{ id }}" for i in range(100)),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Popen[bytes]]]:
    folder = tmp_path_factory.mktemp("hostile")
    with live_server(f"sqlite:///{folder / 'api.db'}", folder / "server.log") as running:
        yield running


async def _cost_of(server: tuple[str, Popen[bytes]], document: str) -> tuple[float, dict]:  # type: ignore[type-arg]
    """The server CPU a document costs, with a health probe sent alongside it."""
    base, process = server
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        before = cpu_seconds(process)
        hostile = asyncio.create_task(client.post("/graphql", json={"query": document}))
        await asyncio.sleep(0.005)  # the probe arrives while the document is being handled
        probe = await client.get("/healthz", timeout=5)
        response = await hostile
        cost = cpu_seconds(process) - before
    assert probe.status_code == 200
    return cost, response.json()


@pytest.mark.parametrize("n", [16, 40, 200])
@pytest.mark.parametrize("shape", FAN_OUTS)
async def test_fragment_fan_out_costs_little(
    server: tuple[str, Popen[bytes]], shape: str, n: int
) -> None:
    document = fan_out(n, **FAN_OUTS[shape])
    cost, body = await _cost_of(server, document)
    assert body.get("errors") or body.get("data"), body
    assert cost < CPU_BUDGET_SECONDS, f"{shape} n={n} cost {cost * 1000:.0f} ms of CPU"


@pytest.mark.parametrize("name", REPEATED)
async def test_repeated_fields_cost_little(server: tuple[str, Popen[bytes]], name: str) -> None:
    cost, body = await _cost_of(server, REPEATED[name])
    assert body.get("errors"), body
    assert cost < CPU_BUDGET_SECONDS, f"{name} cost {cost * 1000:.0f} ms of CPU"


async def test_a_fan_out_within_the_limits_is_answered(api: Api, backend: Backend) -> None:
    """Spreading a fragment twice is legal GraphQL: execution merges it, so it is answered."""
    account = await api.sign_up()
    response = await api.execute(fan_out(40, **FAN_OUTS["user"]), as_user=account)
    assert response.ok() == {"me": {"id": account.id}}


async def test_one_password_check_per_operation(api: Api) -> None:
    two = """mutation {
      a: signUp(input: {email: "a@example.com", password: "password123"}) { token }
      b: signUp(input: {email: "b@example.com", password: "password123"}) { token }
    }"""
    response = await api.execute(two)
    assert response.data is None
    assert response.codes == ["QUERY_TOO_COMPLEX"]
    assert response.errors[0]["extensions"]["limit"] == "passwordFields"
    # Nothing was hashed or created: the second sign-up of `a` still works.
    signed_up = await api.execute(
        'mutation { signUp(input: {email: "a@example.com", password: "password123"}) '
        "{ user { email } } }"
    )
    assert signed_up.ok()["signUp"]["user"]["email"] == "a@example.com"


async def test_password_fields_hidden_in_fragments_count_too(api: Api) -> None:
    document = """mutation { ...In ...Up }
      fragment In on Mutation { signIn(input: {email: "x@example.com", password: "p"}) { token } }
      fragment Up on Mutation { signUp(input: {email: "y@example.com", password: "password123"}) { token } }"""
    response = await api.execute(document)
    assert response.codes == ["QUERY_TOO_COMPLEX"]


async def test_every_limit_reports_the_same_code(api: Api, tmp_path: Path) -> None:
    account: Account = await api.sign_up()
    deep = "{ tasks { nodes { " + "subtasks { " * 8 + "id" + " }" * 8 + " } } }"
    aliases = "{ " + " ".join(f"a{i}: me {{ id }}" for i in range(16)) + " }"
    tokens = "{ me { " + " ".join(["id"] * 1000) + " } }"
    cost = "{ tasks(first: 100) { nodes { tags { tasks(first: 100) { totalCount } } } } }"
    for document, limit in [
        (deep, "depth"),
        (aliases, "aliases"),
        (tokens, None),
        (cost, "cost"),
    ]:
        response = await api.execute(document, as_user=account)
        assert response.codes == ["QUERY_TOO_COMPLEX"], (limit, response.body)
        if limit is not None:
            assert response.errors[0]["extensions"]["limit"] == limit


async def test_an_unused_variable_is_a_validation_error(api: Api) -> None:
    account = await api.sign_up()
    response = await api.execute("query($x: Int) { me { id } }", as_user=account)
    assert response.codes == ["GRAPHQL_VALIDATION_FAILED"]
    bad_value = await api.execute(
        "query($x: Int!) { tasks(first: $x) { totalCount } }", {"x": "a"}, as_user=account
    )
    assert bad_value.codes == ["BAD_USER_INPUT"]
