"""Prometheus metrics on GET /metrics: each GraphQL operation counted once, whether one process
serves or several uvicorn workers share PROMETHEUS_MULTIPROC_DIR. With the directory, one scrape
adds up every worker, `graphql-api serve` empties it when it starts, and a worker that dies
leaves no operation "in progress" behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests import live
from tests.helpers import Api

PROBE = "query Probe { __typename }"
REQUESTS = "graphql_requests_total"
IN_PROGRESS = "graphql_requests_in_progress"
WRONG_SIGN_IN = 'mutation($e: String!) { signIn(input: {email: $e, password: "wrong"}) { token } }'


def requests_of(samples: list[tuple[str, dict[str, str], float]], operation: str) -> float:
    """Operations named `operation` counted in `samples`, whatever their type and outcome."""
    return sum(
        value
        for name, labels, value in samples
        if name == REQUESTS and labels.get("operation") == operation
    )


def value_of(samples: list[tuple[str, dict[str, str], float]], metric: str) -> float:
    return sum(value for name, _, value in samples if name == metric)


def parsed(exposition: str) -> list[tuple[str, dict[str, str], float]]:
    families = text_string_to_metric_families(exposition)
    return [(s.name, s.labels, s.value) for family in families for s in family.samples]


def scrape(base: str) -> list[tuple[str, dict[str, str], float]]:
    response = httpx.get(f"{base}/metrics", timeout=30)
    assert response.status_code == 200
    return parsed(response.text)


def probe(base: str) -> None:
    """One GraphQL operation, on a connection of its own (so the kernel may hand it to any
    worker)."""
    response = httpx.post(f"{base}/graphql", json={"query": PROBE}, timeout=30)
    assert response.status_code == 200
    assert response.json() == {"data": {"__typename": "Query"}}


def counter_files(folder: Path) -> dict[int, Path]:
    """Each worker's counters, in a file named after its process id."""
    return {int(file.stem.rsplit("_", 1)[1]): file for file in folder.glob("counter_*.db")}


def probes_per_worker(folder: Path) -> dict[int, float]:
    """Probes counted by each worker process, read from its own file in the directory."""
    counted = {}
    for pid, file in counter_files(folder).items():
        families = MultiProcessCollector.merge([str(file)])
        samples = [(s.name, s.labels, s.value) for family in families for s in family.samples]
        counted[pid] = requests_of(samples, "Probe")
    return counted


def eventually(condition: Callable[[], bool], seconds: float) -> None:
    """Wait for `condition` (a generous bound: this waits on processes starting)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.2)


async def test_one_process_counts_each_operation(api: Api) -> None:
    api = Api(api.client, api.app)  # without the differential twin, which shares the metrics
    for _ in range(3):
        (await api.execute(PROBE)).ok()
    refused = await api.execute("query Mine { me { id } }")
    assert refused.codes == ["UNAUTHENTICATED"]

    samples = parsed((await api.client.get("/metrics")).text)
    assert (REQUESTS, {"operation": "Probe", "type": "query", "outcome": "ok"}, 3.0) in samples
    assert (REQUESTS, {"operation": "Mine", "type": "query", "outcome": "error"}, 1.0) in samples
    assert value_of(samples, IN_PROGRESS) == 0


def test_one_scrape_counts_the_requests_of_every_worker(tmp_path: Path) -> None:
    folder = tmp_path / "metrics"
    database = f"sqlite:///{tmp_path / 'api.db'}"
    env = {"PROMETHEUS_MULTIPROC_DIR": str(folder)}
    with live.live_server(database, tmp_path / "server.log", "--workers", "2", **env) as (base, _):
        sent = 0
        # Each request on a new connection: the kernel hands each to either worker. Send until
        # both have answered some, so that the scrape below has two workers to add up.
        while sum(1 for count in probes_per_worker(folder).values() if count) < 2 or sent < 40:
            assert sent < 2000, f"one worker answered everything: {probes_per_worker(folder)}"
            probe(base)
            sent += 1

        assert requests_of(scrape(base), "Probe") == sent
        assert sum(probes_per_worker(folder).values()) == sent
    assert not list(folder.glob("gauge_live*")), "a worker that stopped was not marked dead"


def test_serve_empties_the_directory_when_it_starts(tmp_path: Path) -> None:
    folder = tmp_path / "metrics"
    database = f"sqlite:///{tmp_path / 'api.db'}"
    env = {"PROMETHEUS_MULTIPROC_DIR": str(folder)}
    for run in (1, 2):
        with live.live_server(
            database, tmp_path / f"server-{run}.log", "--workers", "2", **env
        ) as (
            base,
            _,
        ):
            for _ in range(run):
                probe(base)
            assert requests_of(scrape(base), "Probe") == run  # not the first run's too


def test_serve_refuses_a_directory_that_holds_other_files(tmp_path: Path) -> None:
    folder = tmp_path / "metrics"
    folder.mkdir()
    (folder / "todo.db").write_text("a database, say")
    refused = subprocess.run(
        [sys.executable, "-m", "graphql_api.cli", "serve", "--no-migrate"],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode != 0
    assert f"PROMETHEUS_MULTIPROC_DIR={folder} must be a folder of its own" in refused.stderr
    assert (folder / "todo.db").read_text() == "a database, say"


def test_an_empty_variable_means_no_directory(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'api.db'}"
    env = {"PROMETHEUS_MULTIPROC_DIR": ""}
    with live.live_server(database, tmp_path / "server.log", **env) as (base, process):
        probe(base)
        assert requests_of(scrape(base), "Probe") == 1
    assert not list(Path.cwd().glob(f"*_{process.pid}.db"))  # nothing in the working directory


def test_a_worker_killed_in_the_middle_of_an_operation_leaves_nothing_in_progress(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "metrics"
    database = f"sqlite:///{tmp_path / 'api.db'}"
    # From an email's fourth attempt on, a sign-in waits this long before its password is checked.
    env = {"PROMETHEUS_MULTIPROC_DIR": str(folder), "SIGN_IN_SLOWDOWN_SECONDS": "600"}
    with live.live_server(database, tmp_path / "server.log", "--workers", "2", **env) as (
        base,
        server,
    ):
        live.sign_up(base, "slow@example.com")
        failed: list[BaseException] = []

        def sign_in() -> None:
            try:
                httpx.post(
                    f"{base}/graphql",
                    json={"query": WRONG_SIGN_IN, "variables": {"e": "slow@example.com"}},
                    timeout=60,
                )
            except httpx.HTTPError as exc:
                failed.append(exc)

        for _ in range(3):
            sign_in()
        waiting = threading.Thread(target=sign_in)
        waiting.start()
        eventually(lambda: value_of(scrape(base), IN_PROGRESS) == 1, seconds=30)

        # Every worker: the one holding the sign-in may have counted nothing yet (no file).
        for pid in worker_pids(server):
            os.kill(pid, signal.SIGKILL)  # no shutdown: uvicorn starts a new worker for each
        waiting.join(60)
        assert len(failed) == 1, "the slow sign-in should have lost its worker"

        eventually(lambda: value_of(scrape(base), IN_PROGRESS) == 0, seconds=60)


def worker_pids(server: subprocess.Popen[bytes]) -> list[int]:
    """The uvicorn worker processes of a `graphql-api serve --workers N` (its spawned
    children, not multiprocessing's resource tracker)."""
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
    return [
        int(pid) for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


def test_a_failing_metric_never_fails_the_operation_nor_shows_its_reason(tmp_path: Path) -> None:
    """Metrics are the operator's business: with the folder gone from under a running server,
    operations still answer, and no file path reaches a client."""
    folder = tmp_path / "metrics"
    database = f"sqlite:///{tmp_path / 'api.db'}"
    env = {"PROMETHEUS_MULTIPROC_DIR": str(folder)}
    with live.live_server(database, tmp_path / "server.log", **env) as (base, _):
        for file in folder.iterdir():  # before the first operation writes its files there
            file.unlink()
        folder.rmdir()
        response = httpx.post(f"{base}/graphql", json={"query": PROBE}, timeout=30)
        assert response.json() == {"data": {"__typename": "Query"}}
        assert str(tmp_path) not in response.text
