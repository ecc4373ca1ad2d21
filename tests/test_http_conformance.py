"""The API under uvicorn, as outside tools see it: graphql-http's GraphQL-over-HTTP audit passes
with no warning, and an oversized request head is cut off while it is parsed."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import suppress
from urllib.parse import urlsplit

import httpx
import pytest

from graphql_api.cli import PROJECT_ROOT
from tests import live

AUDIT = PROJECT_ROOT / "tests" / "http_audit"  # package.json, package-lock.json, audit.mjs


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("conformance")
    with live.running_server(f"sqlite:///{folder / 'api.db'}", folder / "server.log") as base:
        yield base


def install_audit() -> str:
    """graphql-http's audit from the committed lockfile (into tests/.work/http_audit)."""
    return str(live.npm_ci(AUDIT, ["package.json", "package-lock.json", "audit.mjs"]))


def test_the_graphql_over_http_audit_passes_without_warnings(needs_npm: None, server: str) -> None:
    """graphql-http's auditServer: 53 ok and 8 warnings before application/graphql-response+json
    was supported. The audit's queries (`{ __typename }`, `__type`) need no token."""
    folder = install_audit()
    run = subprocess.run(
        ["node", "audit.mjs", f"{server}/graphql"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    not_ok = json.dumps(report["failed"], indent=2)
    assert report["counts"]["error"] == 0, not_ok
    assert report["counts"]["warn"] == 0, not_ok
    assert report["counts"]["notice"] == 0, not_ok
    assert report["counts"]["ok"] >= 61, report["counts"]


def test_an_oversized_request_head_is_cut_off_while_parsing(server: str) -> None:
    """uvicorn's httptools parser has no header limit: a 50 MB header used to be read whole
    (2 s of stalled event loop, 3x its size in memory) before the app could refuse it."""
    address = urlsplit(server)
    sent = 0
    answer = b""
    started = time.monotonic()
    with socket.create_connection((address.hostname, address.port)) as sock:
        sock.settimeout(10)
        try:
            sock.sendall(b"POST /graphql HTTP/1.1\r\nHost: api\r\nX-Pad: ")
            while sent < 64 * 1024 * 1024:
                sock.sendall(b"a" * 65536)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused and closed before the client finished: the point
        with suppress(ConnectionResetError, TimeoutError):  # the reset can overtake the 431
            answer = sock.recv(4096)
    assert sent < 64 * 1024 * 1024, "the server read the whole 64 MB head"
    assert not answer or answer.startswith(b"HTTP/1.1 431"), answer[:200]
    # The server is unharmed and answers at once.
    assert time.monotonic() - started < 10
    assert httpx.get(f"{server}/healthz", timeout=2).status_code == 200


def test_a_head_under_the_parser_bound_gets_the_graphql_shaped_431(server: str) -> None:
    response = httpx.post(
        f"{server}/graphql",
        json={"query": "{ __typename }"},
        headers={"Authorization": "Bearer " + "a" * 100_000},
    )
    assert response.status_code == 431
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
