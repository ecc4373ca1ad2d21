"""Sign-in and sign-up throttling, across processes (the counts live in the database): failures
block an (email, address) pair and an address, slow an email down without ever locking its owner
out; sign-ups are limited per address; password hashing runs on a bounded pool."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher

from graphql_api.users.throttle import slowdown
from tests.conftest import Backend, make_settings
from tests.helpers import Api, Response, serve

SIGN_IN = (
    "mutation($e: String!, $p: String!) { signIn(input: {email: $e, password: $p}) { token } }"
)
LIMITS = {"sign_in_max_failures_per_email_and_address": 3, "sign_in_max_failures_per_address": 5}
SIGN_UP = 'mutation($e: String!) { signUp(input: {email: $e, password: "password123"}) { token } }'


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


@asynccontextmanager
async def from_address(api: Api, host: str) -> AsyncIterator[Api]:
    """The same app, reached from another client address."""
    transport = httpx.ASGITransport(app=api.app, client=(host, 4321))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield Api(client, api.app)


async def test_an_email_and_address_pair_is_blocked_after_repeated_failures_across_workers(
    worker_a: Api, worker_b: Api
) -> None:
    await worker_a.sign_up("target@example.com", password="right-password")
    for api in (worker_a, worker_b, worker_a):  # three failures, spread over two workers
        assert (await sign_in(api, "target@example.com", "wrong")).codes == ["UNAUTHENTICATED"]

    blocked = await sign_in(worker_b, "TARGET@example.com", "right-password")
    assert blocked.codes == ["RATE_LIMITED"]
    assert 0 < blocked.errors[0]["extensions"]["retryAfter"] <= 300
    assert blocked.data == {"signIn": None}


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


# --- nobody can lock an account's owner out (issue 10, item 5) --------------------------------


async def test_a_guesser_elsewhere_cannot_lock_the_owner_out(worker_a: Api) -> None:
    await worker_a.sign_up("victim@example.com", password="right-password")
    async with (
        from_address(worker_a, "203.0.113.6") as guesser,
        from_address(worker_a, "198.51.100.7") as owner,
    ):
        for variant in ("victim@example.com", " VICTIM@example.com", "Victim@Example.COM "):
            assert (await sign_in(guesser, variant, "guess")).codes == ["UNAUTHENTICATED"]
        assert (await sign_in(guesser, "victim@example.com ", "guess")).codes == ["RATE_LIMITED"]

        started = time.monotonic()
        assert (await sign_in(owner, "Victim@example.com", "right-password")).ok()
        assert time.monotonic() - started < 5  # slowed at most a little, never refused

        blocked = await sign_in(guesser, "victim@example.com", "right-password")
        assert blocked.codes == ["RATE_LIMITED"]  # the guesser's pair stays blocked
        assert blocked.errors[0]["extensions"]["retryAfter"] > 0


async def test_an_emails_failures_delay_every_attempt_before_the_password_is_checked(
    backend: Backend,
) -> None:
    """A delay on failed answers only would let a parallel guesser stop waiting at the first
    fast answer: so right and wrong passwords for the email wait alike."""
    settings = make_settings(backend.app_url, sign_in_slowdown_seconds=0.3, **LIMITS)
    async with serve(settings) as api:
        await api.sign_up("popular@example.com", password="right-password")
        for n in range(3):  # from three addresses: no pair or address reaches its limit
            async with from_address(api, f"192.0.2.{n + 1}") as guesser:
                assert (await sign_in(guesser, "popular@example.com", "x")).codes == [
                    "UNAUTHENTICATED"
                ]
        timings = {}
        for password in ("wrong", "right-password"):
            async with from_address(api, f"198.51.100.{len(timings) + 1}") as client:
                started = time.monotonic()
                await sign_in(client, "popular@example.com", password)
                timings[password] = time.monotonic() - started
        assert timings["wrong"] >= 0.3
        assert timings["right-password"] >= 0.3


async def test_parallel_guesses_cannot_go_past_the_limit(worker_a: Api) -> None:
    await worker_a.sign_up("target@example.com", password="right-password")
    answers = await asyncio.gather(
        *(sign_in(worker_a, "target@example.com", "wrong") for _ in range(12))
    )
    codes = sorted(code for answer in answers for code in answer.codes)
    assert codes.count("UNAUTHENTICATED") == 3  # the pair's limit, however the race goes
    assert codes.count("RATE_LIMITED") == 9


async def test_signing_in_to_ones_own_account_does_not_wipe_an_address_failures(
    worker_a: Api,
) -> None:
    await worker_a.sign_up("mine@example.com", password="my-password")
    for n in range(5):  # the address limit, with a success of its own after each guess
        assert (await sign_in(worker_a, f"guess{n}@example.com", "x")).codes == ["UNAUTHENTICATED"]
        if n < 4:
            assert (await sign_in(worker_a, "mine@example.com", "my-password")).ok()
    assert (await sign_in(worker_a, "guess9@example.com", "x")).codes == ["RATE_LIMITED"]


# --- sign-up abuse (issue 10, item 4) ----------------------------------------------------------


async def test_sign_ups_are_limited_per_address_across_workers(backend: Backend) -> None:
    settings = make_settings(backend.app_url, sign_up_max_per_address=3)
    async with serve(settings) as worker_a, serve(settings) as worker_b:
        for api in (worker_a, worker_b, worker_a):
            await api.sign_up()
        refused = await worker_b.execute(SIGN_UP, {"e": "one-more@example.com"})
        assert refused.codes == ["RATE_LIMITED"]
        assert 0 < refused.errors[0]["extensions"]["retryAfter"] <= 3601
        async with from_address(worker_a, "198.51.100.20") as elsewhere:
            assert (await elsewhere.execute(SIGN_UP, {"e": "one-more@example.com"})).ok()


async def test_sign_up_inputs_refused_before_hashing_do_not_count(backend: Backend) -> None:
    settings = make_settings(backend.app_url, sign_up_max_per_address=1)
    async with serve(settings) as api:
        bad = await api.execute(SIGN_UP, {"e": "not-an-email"})
        assert bad.codes == ["BAD_USER_INPUT"]
        assert (await api.execute(SIGN_UP, {"e": "first@example.com"})).ok()


class ConcurrencyProbe(PasswordHasher):
    """Records how many hashes and checks run at once (each made to last a little)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.running = 0
        self.most = 0
        self.lock = threading.Lock()

    def _measured(self, work: Any, *args: Any) -> Any:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            time.sleep(0.05)
            return work(*args)
        finally:
            with self.lock:
                self.running -= 1

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        return self._measured(super().hash, password)  # type: ignore[no-any-return]

    def verify(self, hash: str | bytes, password: str | bytes) -> Any:
        return self._measured(super().verify, hash, password)


async def test_password_hashing_runs_off_the_event_loop_on_a_bounded_pool(
    backend: Backend,
) -> None:
    """Parallel sign-ups queue for PASSWORD_HASH_THREADS instead of each taking a thread (and
    argon2's memory) at once; meanwhile the event loop keeps answering."""
    settings = make_settings(backend.app_url, password_hash_threads=2)
    async with serve(settings) as api:
        probe = ConcurrencyProbe(time_cost=1, memory_cost=64)
        api.app.state.services.passwords._hasher = probe
        async with AsyncExitStack() as clients:
            requests = []
            for n in range(8):
                client = await clients.enter_async_context(from_address(api, f"192.0.2.{n + 1}"))
                email = f"{uuid.uuid4().hex}@example.com"
                requests.append(client.execute(SIGN_UP, {"e": email}))
                requests.append(sign_in(client, "nobody@example.com", "password123"))
            signing = asyncio.gather(*requests)
            await asyncio.sleep(0.05)
            started = time.monotonic()
            assert (await api.client.get("/healthz")).status_code == 200
            assert time.monotonic() - started < 0.5
            answers = await signing
    assert all(answer.status == 200 for answer in answers)
    assert probe.most == 2
