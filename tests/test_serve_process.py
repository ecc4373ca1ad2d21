"""`graphql-api serve` as operators run it: behind a proxy (whose X-Forwarded-For is believed
only from trusted peers, as the sign-in throttle shows), and stopped by SIGTERM (in-flight
requests finish, within the graceful-shutdown timeout)."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import sqlalchemy as sa

from graphql_api.users import throttle
from graphql_api.users.repository import email_key
from tests.conftest import make_settings
from tests.live import live_server, sign_up

SIGN_IN = (
    "mutation($e: String!, $p: String!) { signIn(input: {email: $e, password: $p}) { token } }"
)
ADDRESS_LIMIT = {"SIGN_IN_MAX_FAILURES_PER_ADDRESS": "3", "SIGN_IN_SLOWDOWN_SECONDS": "0"}
TRUSTED_PEER = "127.0.0.1"
UNTRUSTED_PEER = "127.0.0.2"  # also this machine (127/8 is loopback), but not trusted


@contextmanager
def client_from(base: str, peer: str) -> Iterator[httpx.Client]:
    """A client whose connections come from `peer`: the address the server sees."""
    with httpx.Client(
        base_url=base, transport=httpx.HTTPTransport(local_address=peer), timeout=60
    ) as client:
        yield client


def sign_in(
    client: httpx.Client, email: str, password: str, forwarded_for: str | None = None
) -> httpx.Response:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    body = {"query": SIGN_IN, "variables": {"e": email, "p": password}}
    return client.post("/graphql", json=body, headers=headers)


def failed_sign_in(client: httpx.Client, forwarded_for: str | None = None) -> str:
    """The error code of a sign-in to an unknown email (each one new: only the address limit
    can stop them)."""
    response = sign_in(client, f"{uuid.uuid4().hex}@example.com", "wrong", forwarded_for)
    code: str = response.json()["errors"][0]["extensions"]["code"]
    return code


def test_a_forged_x_forwarded_for_from_an_untrusted_peer_is_ignored(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'api.db'}"
    trust_localhost = ["--proxy-headers", "--forwarded-allow-ips", TRUSTED_PEER]
    with (
        live_server(database, tmp_path / "server.log", *trust_localhost, **ADDRESS_LIMIT) as (
            base,
            _,
        ),
        client_from(base, UNTRUSTED_PEER) as untrusted,
        client_from(base, TRUSTED_PEER) as proxy,
    ):
        # given: failures from one peer, each claiming another address
        for n in range(3):
            assert failed_sign_in(untrusted, f"203.0.113.{n}") == "UNAUTHENTICATED"

        # then: they all counted against the peer itself, which is now blocked
        assert failed_sign_in(untrusted, "203.0.113.99") == "RATE_LIMITED"
        # and the trusted proxy's word still stands for its clients
        assert failed_sign_in(proxy, "203.0.113.99") == "UNAUTHENTICATED"


def test_x_forwarded_for_from_a_trusted_proxy_is_the_client_address(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'api.db'}"
    settings = {"PROXY_HEADERS": "true", "FORWARDED_ALLOW_IPS": TRUSTED_PEER, **ADDRESS_LIMIT}
    with (
        live_server(database, tmp_path / "server.log", **settings) as (base, _),
        client_from(base, TRUSTED_PEER) as proxy,
    ):
        # given: one client behind the proxy fails three times, forging a first address each
        # time (the proxy appends the real one: the last is what counts)
        for n in range(3):
            forged_then_real = f"203.0.113.{n}, 198.51.100.7"
            assert failed_sign_in(proxy, forged_then_real) == "UNAUTHENTICATED"

        # then: that client is blocked, and another one behind the same proxy is not
        assert failed_sign_in(proxy, "198.51.100.7") == "RATE_LIMITED"
        assert failed_sign_in(proxy, "198.51.100.8") == "UNAUTHENTICATED"


def test_x_forwarded_for_is_ignored_by_default_even_from_localhost(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'api.db'}"
    with (
        live_server(database, tmp_path / "server.log", **ADDRESS_LIMIT) as (base, _),
        client_from(base, TRUSTED_PEER) as client,
    ):
        for n in range(3):
            assert failed_sign_in(client, f"198.51.100.{n}") == "UNAUTHENTICATED"
        assert failed_sign_in(client, "198.51.100.99") == "RATE_LIMITED"


PASSWORD = "password123"  # what tests.live.sign_up gives the account


def sign_in_once(base: str, email: str, password: str) -> httpx.Response:
    with httpx.Client(base_url=base, timeout=120) as client:
        return sign_in(client, email, password)


@contextmanager
def slow_sign_in(base: str, database: str, email: str) -> Iterator[Future[httpx.Response]]:
    """A sign-in with the right password, waiting out the throttle's delay when this yields
    (three failures of its email came first); the future answers its response."""
    for _ in range(3):
        sign_in_once(base, email, "wrong")
    with ThreadPoolExecutor(max_workers=1) as threads:
        future = threads.submit(sign_in_once, base, email, PASSWORD)
        # It counts its attempt (the email's fourth) before it waits: wait for the count.
        key = throttle.sign_in(make_settings(database), email_key(email), TRUSTED_PEER).email.key
        counted = sa.select(throttle.THROTTLES.c.failures).where(throttle.THROTTLES.c.key == key)
        engine = sa.create_engine(database)
        try:
            for _ in range(600):
                with engine.connect() as conn:
                    if conn.execute(counted).scalar() == 4:
                        break
                time.sleep(0.05)
            else:
                raise AssertionError("the sign-in never reached its delay")
        finally:
            engine.dispose()
        yield future


def test_on_sigterm_an_in_flight_request_finishes_and_the_server_exits(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'api.db'}"
    settings = {"SIGN_IN_SLOWDOWN_SECONDS": "3", "TIMEOUT_GRACEFUL_SHUTDOWN": "60"}
    with (
        live_server(database, tmp_path / "server.log", **settings) as (base, process),
        slow_sign_in(base, database, sign_up_email(base, "patient")) as in_flight,
    ):
        process.send_signal(signal.SIGTERM)

        response = in_flight.result(timeout=120)
        assert response.status_code == 200
        assert response.json()["data"]["signIn"]["token"]
        assert process.wait(timeout=60) == -signal.SIGTERM  # uvicorn, once done, re-raises it


def test_a_request_outliving_the_shutdown_timeout_does_not_keep_the_server(
    tmp_path: Path,
) -> None:
    database = f"sqlite:///{tmp_path / 'api.db'}"
    settings = {"SIGN_IN_SLOWDOWN_SECONDS": "600", "TIMEOUT_GRACEFUL_SHUTDOWN": "1"}
    with (
        live_server(database, tmp_path / "server.log", **settings) as (base, process),
        slow_sign_in(base, database, sign_up_email(base, "stuck")) as in_flight,
    ):
        process.send_signal(signal.SIGTERM)

        # then: it exits once the timeout is over, without waiting out the request's 600 s
        assert process.wait(timeout=60) == -signal.SIGTERM  # uvicorn, once done, re-raises it
        # and the request was cut off: uvicorn answers 500 to a response not yet started
        assert in_flight.result(timeout=60).status_code == 500


def sign_up_email(base: str, name: str) -> str:
    email = f"{name}@example.com"
    sign_up(base, email)
    return email
