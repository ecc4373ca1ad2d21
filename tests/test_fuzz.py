"""Fuzzing: schemathesis generates operations from the exported `schema.graphql` and sends them,
with a valid token, to the API running under uvicorn. No answer may be a server error, an
unmasked or uncoded error, or take more than a few seconds.

CI runs a bounded number of examples per root field (FUZZ_EXAMPLES, default 3); `make fuzz`
runs many more.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from graphql_api.cli import PROJECT_ROOT
from tests import live
from tests.conftest import TEST_DATABASE_URL, throwaway_postgresql_database
from tests.malformed import CASES, Case, check_refusal

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "3"))
schema = schemathesis.graphql.from_path(PROJECT_ROOT / "schema.graphql")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The API under uvicorn, and a token of a user with some data. On PostgreSQL when the
    suite has one (the stricter of the two databases), else on a SQLite file."""
    folder = tmp_path_factory.mktemp("fuzz")
    with ExitStack() as stack:
        url = (
            stack.enter_context(throwaway_postgresql_database("fuzz"))
            if TEST_DATABASE_URL
            else f"sqlite:///{folder / 'fuzz.db'}"
        )
        log = folder / "server.log"
        base = stack.enter_context(
            live.running_server(url, log, LOG_LEVEL="ERROR", SIGN_IN_SLOWDOWN_SECONDS="0")
        )
        token = live.sign_up(base, "fuzz@example.com")
        for query in (
            'mutation { createTag(input: {name: "seed"}) { id } }',
            'mutation { createTask(input: {title: "seed"}) { id } }',
            "mutation { createConversation(input: {}) { id } }",
        ):
            httpx.post(
                f"{base}/graphql",
                json={"query": query},
                headers={"Authorization": f"Bearer {token}"},
            ).raise_for_status()
        yield f"{base}/graphql", token
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


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


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_malformed_transport_gets_a_coded_4xx_from_the_live_server(
    case: Case, server: tuple[str, str]
) -> None:
    """The hand-written transport cases of tests/malformed.py, through uvicorn's own parser."""
    url, _ = server
    async with httpx.AsyncClient(timeout=10) as client:
        check_refusal(case, await case.send(client, url))
