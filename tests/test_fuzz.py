"""Fuzzing: schemathesis generates operations from the exported `schema.graphql` and sends them,
with a valid token, to the API running under uvicorn. No answer may be a server error, an
unmasked or uncoded error, or take more than a few seconds.

CI runs a bounded number of examples per root field (FUZZ_EXAMPLES, default 3); `make fuzz`
runs many more.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
import sqlalchemy as sa
from hypothesis import HealthCheck, settings

from graphql_api.cli import PROJECT_ROOT, migrate
from tests import pgcluster
from tests.conftest import JWT_SECRET, TEST_DATABASE_URL, make_settings

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "3"))
schema = schemathesis.graphql.from_path(PROJECT_ROOT / "schema.graphql")


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database of the fuzzer's own: PostgreSQL when the suite has one (it is the stricter
    of the two), else a SQLite file."""
    if not TEST_DATABASE_URL:
        yield f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'fuzz.db'}"
        return
    name = f"fuzz_{uuid.uuid4().hex[:12]}"
    server = sa.create_engine(TEST_DATABASE_URL, isolation_level="AUTOCOMMIT")
    with server.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield sa.make_url(TEST_DATABASE_URL).set(database=name).render_as_string(hide_password=False)
    with server.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    server.dispose()


@pytest.fixture(scope="module")
def server(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The API under uvicorn, and a token of a user with some data."""
    folder = tmp_path_factory.mktemp("fuzz-server")
    url = database
    migrate(make_settings(url))
    port = pgcluster._free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "JWT_SECRET": JWT_SECRET,
        "ARGON2_TIME_COST": "1",
        "ARGON2_MEMORY_KIB": "64",
        "LOG_LEVEL": "CRITICAL",
        "SIGN_IN_SLOWDOWN_SECONDS": "0",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "graphql_api.cli", "serve", "--no-migrate", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(folder / "server.log").open("wb"),
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    signed_up = httpx.post(
        f"{base}/graphql",
        json={
            "query": 'mutation { signUp(input: {email: "fuzz@example.com", password: "password123"}) { token } }'
        },
    ).json()
    token = signed_up["data"]["signUp"]["token"]
    for query in (
        'mutation { createTag(input: {name: "seed"}) { id } }',
        'mutation { createTask(input: {title: "seed"}) { id } }',
        "mutation { createConversation(input: {}) { id } }",
    ):
        httpx.post(
            f"{base}/graphql", json={"query": query}, headers={"Authorization": f"Bearer {token}"}
        )
    yield f"{base}/graphql", token
    process.terminate()
    process.wait(10)
    log = (folder / "server.log").read_text()
    assert "Traceback" not in log, log[-3000:]


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_generated_operations_never_break_the_server(
    case: schemathesis.Case, server: tuple[str, str]
) -> None:
    url, token = server
    started = time.monotonic()
    response = case.call(
        base_url=url.removesuffix("/graphql"),
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert time.monotonic() - started < 10
    assert response.status_code < 500, response.text
    if response.status_code != 200:
        return  # refused as a bad request (413, 400): fine
    for error in response.json().get("errors") or []:
        code = (error.get("extensions") or {}).get("code")
        assert code is not None, error
        assert code != "INTERNAL_SERVER_ERROR", (case.body, error)


def test_the_fuzzer_targets_every_root_field() -> None:
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 30
    assert Path(PROJECT_ROOT / "schema.graphql").exists()
