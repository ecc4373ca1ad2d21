"""Sign-in throttling: repeated failures slow down and then refuse, per email and per client
address, across processes (the counts live in the database); a success resets them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from graphql_api.users.throttle import slowdown
from tests.conftest import Backend, make_settings
from tests.helpers import Api, Response, serve

SIGN_IN = (
    "mutation($e: String!, $p: String!) { signIn(input: {email: $e, password: $p}) { token } }"
)
LIMITS = {"sign_in_max_failures_per_email": 3, "sign_in_max_failures_per_address": 5}


@pytest.fixture
async def worker_a(backend: Backend) -> AsyncIterator[Api]:
    async with serve(make_settings(backend.app_url, **LIMITS)) as api:
        yield api


@pytest.fixture
async def worker_b(backend: Backend) -> AsyncIterator[Api]:
    """A second, independent app on the same database: another worker process."""
    async with serve(make_settings(backend.app_url, **LIMITS)) as api:
        yield api


async def sign_in(api: Api, email: str, password: str) -> Response:
    return await api.execute(SIGN_IN, {"e": email, "p": password})


async def test_an_email_is_blocked_after_repeated_failures_across_workers(
    worker_a: Api, worker_b: Api
) -> None:
    await worker_a.sign_up("target@example.com", password="right-password")
    for api in (worker_a, worker_b, worker_a):  # three failures, spread over two workers
        assert (await sign_in(api, "target@example.com", "wrong")).codes == ["UNAUTHENTICATED"]

    blocked = await sign_in(worker_b, "TARGET@example.com", "right-password")
    assert blocked.codes == ["RATE_LIMITED"]
    assert 0 < blocked.errors[0]["extensions"]["retryAfter"] <= 300
    assert blocked.data is None


async def test_a_success_resets_the_count(worker_a: Api) -> None:
    await worker_a.sign_up("forgetful@example.com", password="right-password")
    for _ in range(2):
        await sign_in(worker_a, "forgetful@example.com", "wrong")
    assert (await sign_in(worker_a, "forgetful@example.com", "right-password")).ok()
    for _ in range(2):
        await sign_in(worker_a, "forgetful@example.com", "wrong")
    assert (await sign_in(worker_a, "forgetful@example.com", "right-password")).ok()


async def test_one_address_trying_many_emails_is_blocked(worker_a: Api) -> None:
    await worker_a.sign_up("victim@example.com", password="right-password")
    for n in range(5):  # never the same email twice: only the address limit can catch this
        assert (await sign_in(worker_a, f"guess{n}@example.com", "x")).codes == ["UNAUTHENTICATED"]
    assert (await sign_in(worker_a, "victim@example.com", "right-password")).codes == [
        "RATE_LIMITED"
    ]


async def test_unknown_emails_are_throttled_like_known_ones(worker_a: Api) -> None:
    for _ in range(3):
        await sign_in(worker_a, "nobody@example.com", "x")
    assert (await sign_in(worker_a, "nobody@example.com", "x")).codes == ["RATE_LIMITED"]


def test_failures_slow_down_before_they_block() -> None:
    settings = make_settings("sqlite://", sign_in_slowdown_seconds=0.5)
    delays = [slowdown(settings, failures) for failures in range(1, 9)]
    assert delays[:2] == [0.0, 0.0]
    assert delays[2:] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
