"""Replicas share nothing but PostgreSQL: two `graphql-api serve` processes on different ports and
one database hold the sign-in throttle, idempotency keys and token revocation together, as one
server would. The other modules test each of these within one server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack

import pytest

from tests import live
from tests.conftest import TEST_DATABASE_URL, emptied_postgresql
from tests.helpers import Api
from tests.test_account_lifecycle import PASSWORD, SIGN_OUT, change_password, works
from tests.test_retries import CREATES, counts
from tests.test_throttling import LIMITS, sign_in

pytestmark = pytest.mark.skipif(
    not TEST_DATABASE_URL, reason="PostgreSQL only: set TEST_DATABASE_URL"
)


@pytest.fixture(scope="module")
def servers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """Two servers, each a process of its own with its own port, on one database: started once
    for the module (each test acts as users of its own), yields their base URLs."""
    backend = emptied_postgresql(request.getfixturevalue("_postgresql_migrated"))
    logs = tmp_path_factory.mktemp("replicas")
    env = {name.upper(): str(value) for name, value in LIMITS.items()}
    with ExitStack() as stack:
        a, b = (
            stack.enter_context(live.running_server(backend.app_url, logs / log, **env))
            for log in ("a.log", "b.log")
        )
        yield a, b


@pytest.fixture
async def replicas(servers: tuple[str, str]) -> AsyncIterator[tuple[Api, Api]]:
    async with live.api_at(servers[0]) as a, live.api_at(servers[1]) as b:
        yield a, b


async def test_failed_sign_ins_spread_over_two_replicas_block_as_on_one(
    replicas: tuple[Api, Api],
) -> None:
    a, b = replicas
    await a.sign_up("target@example.com", password="right-password")
    for replica in (a, b, a):  # the limit of one (email, address) pair, alternating
        assert (await sign_in(replica, "target@example.com", "wrong")).codes == ["UNAUTHENTICATED"]

    for replica in (b, a):
        blocked = await sign_in(replica, "target@example.com", "right-password")
        assert blocked.codes == ["RATE_LIMITED"]


async def test_a_create_retried_on_the_other_replica_returns_the_first_result(
    replicas: tuple[Api, Api],
) -> None:
    a, b = replicas
    user = await a.sign_up()
    key = {"Idempotency-Key": "retried-elsewhere"}
    first = (await a.execute(CREATES["createTask"], as_user=user, headers=key)).ok()
    again = (await b.execute(CREATES["createTask"], as_user=user, headers=key)).ok()
    assert again == first
    assert await counts(a, user) == {"tasks": 1, "tags": 0, "conversations": 0}


async def test_the_same_create_sent_to_both_replicas_at_once_creates_one_row(
    replicas: tuple[Api, Api],
) -> None:
    a, b = replicas
    user = await a.sign_up()
    key = {"Idempotency-Key": "both-at-once"}
    answers = await asyncio.gather(
        *(replica.execute(CREATES["createTag"], as_user=user, headers=key) for replica in (a, b))
    )
    created = {answer.data["createTag"]["id"] for answer in answers if not answer.errors}
    assert len(created) == 1
    assert all(answer.codes in ([], ["CONFLICT"]) for answer in answers)  # CONFLICT: retry
    assert await counts(b, user) == {"tasks": 0, "tags": 1, "conversations": 0}


async def test_signing_out_everywhere_on_one_replica_revokes_the_token_on_the_other(
    replicas: tuple[Api, Api],
) -> None:
    a, b = replicas
    user = await a.sign_up()
    assert await works(b, user.token)
    (await a.execute(SIGN_OUT, token=user.token)).ok()
    assert not await works(b, user.token)


async def test_a_password_changed_on_one_replica_revokes_old_tokens_on_the_other(
    replicas: tuple[Api, Api],
) -> None:
    a, b = replicas
    user = await a.sign_up()
    changed = (await change_password(a, user.token, PASSWORD, "a-new-password")).ok()
    assert not await works(b, user.token)
    assert await works(b, changed["changePassword"]["token"])
