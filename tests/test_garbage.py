"""A request's objects go when it ends: nothing the server builds for it is left in a reference
cycle for Python's cyclic garbage collector.

Under load, a cycle through graphql-core's executor kept each request's context, loaders and
rows until the collector ran, which then freed a couple of hundred requests' objects at once
in pauses of 20 to 60 ms: the latency's 99th percentile (docs/benchmarks.md). So this holds
through HTTP for the benchmark's queries (the compiled path), a field error and a mutation.
"""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from graphql_api.cli import PROJECT_ROOT
from tests.helpers import Api

OPERATIONS = PROJECT_ROOT / "bench" / "operations"
SERVER_PACKAGES = {"graphql_api", "graphql", "strawberry", "aiodataloader", "asyncpg"}
"""Whose objects count: the request's. Not the test client's (httpx keeps a response in a
cycle), nor SQLAlchemy's (building a Core statement makes a few small cycles of its own)."""


async def garbage_left_by(send: Callable[[], Awaitable[Any]]) -> Counter[str]:
    """The server's objects, by type, that only the cyclic collector frees after `send`."""
    await send()  # the first time fills caches that are meant to last
    gc.collect()
    gc.disable()
    try:
        await send()
        gc.set_debug(gc.DEBUG_SAVEALL)  # keep what it finds, to name it
        gc.collect()
        return Counter(
            f"{type(item).__module__}.{type(item).__qualname__}"
            for item in gc.garbage
            if type(item).__module__.split(".")[0] in SERVER_PACKAGES
        )
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


@pytest.mark.parametrize(
    "operation", ["task_list", "tags_with_tasks", "conversations_with_last_messages"]
)
async def test_a_query_leaves_no_cycles(api: Api, operation: str) -> None:
    account = await api.sign_up()
    query = (OPERATIONS / f"{operation}.graphql").read_text()
    await api.execute(
        'mutation { createTask(input: {title: "t"}) { id } createTag(input: {name: "n"}) { id } }',
        as_user=account,
    )
    assert await garbage_left_by(lambda: api.execute(query, as_user=account)) == Counter()


async def test_a_field_error_leaves_no_cycles(api: Api) -> None:
    account = await api.sign_up()

    async def send() -> None:
        response = await api.execute("{ tasks(first: 1000) { totalCount } }", as_user=account)
        assert response.codes == ["BAD_USER_INPUT"]

    assert await garbage_left_by(send) == Counter()


async def test_a_mutation_leaves_no_cycles(api: Api) -> None:
    account = await api.sign_up()

    async def send() -> None:
        create = 'mutation { createTask(input: {title: "t"}) { id title } }'
        (await api.execute(create, as_user=account)).ok()

    assert await garbage_left_by(send) == Counter()
