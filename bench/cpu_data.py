"""CPU per request in-process: this checkout against git revisions of it, side by side.

    .venv/bin/python bench/cpu_data.py [--baseline REV ...] [--operations task_list,...]

Each code version (this checkout, and each `--baseline` revision, checked out under
bench/.work) runs in a worker process of its own, built like the test suite builds the app
(`create_app`, reached over ASGI by httpx: HTTP parsing, FastAPI, Strawberry and its
extensions included), on the same PostgreSQL database, connected as an ordinary role so that
row-level security applies. The database is seeded like the load benchmark (users of 100
tasks, 8 tags, 3 conversations of 20 messages) on first use and kept.

Requests are sequential, each as the next of the users in turn. Each round runs every version
in turn (in alternating order), so the rest of the (shared) machine weighs on them alike; the
figure is `time.process_time()` per request: every thread of the worker process (the database
driver's threads too, and the in-process HTTP client's share). Read the ratios, the median of
each round's ratio: absolute figures move with the machine's load.

Before measuring, every version answers the same requests and the answers must be identical
(byte for byte, once parsed): a faster version that answers differently is a bug.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from otlp_sink import OtlpSink
from seeded import APP_ROLE, SERVER, prepare

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / ".work"
OPERATIONS = ROOT / "bench" / "operations"
SECRET = "cpu-data-secret-" + "s" * 40
VARIABLES: dict[str, dict[str, Any]] = {
    "task_list": {"first": 20},
    "tags_with_tasks": {"first": 20, "tasksFirst": 5},
    "conversations_with_last_messages": {"first": 20, "last": 5},
}
OPERATION_NAMES = ",".join(VARIABLES)


# --- the driver ------------------------------------------------------------------------------


def checkout(revision: str) -> Path:
    """A detached git worktree of `revision` under bench/.work (made once, then reused)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True)
        return done.stdout.strip()

    commit = git("rev-parse", "--short", revision)
    path = WORK / f"cpu-baseline-{commit}"
    if not path.exists():
        git("worktree", "add", "--detach", str(path), commit)
    return path


class Worker:
    """One code version serving in a process of its own, driven over its stdin and stdout."""

    def __init__(
        self, name: str, source: Path, url: str, users_file: Path, env: dict[str, str]
    ) -> None:
        self.name = name
        env = {**os.environ, **env, "PYTHONPATH": str(source)}
        command = [sys.executable, str(Path(__file__).resolve()), "--worker"]
        command += ["--source", str(source), "--database-url", url, "--users-file", str(users_file)]
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True
        )
        self.ask({"command": "ready"})

    def ask(self, message: dict[str, Any]) -> Any:
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None
        assert stdout is not None
        stdin.write(json.dumps(message) + "\n")
        stdin.flush()
        line = stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name}: the worker stopped")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"{self.name}: {answer['error']}")
        return answer["result"]

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=30)


def drive(args: argparse.Namespace) -> None:
    user_ids = prepare(args.database_url, args.users, SECRET)
    WORK.mkdir(parents=True, exist_ok=True)
    users_file = WORK / "cpu-data-users.json"
    users_file.write_text(json.dumps(user_ids))
    import sqlalchemy as sa

    app_url = sa.make_url(args.database_url).set(username=APP_ROLE)
    url = app_url.render_as_string(hide_password=False)
    sources: list[tuple[str, Path, dict[str, str]]] = [
        (rev, checkout(rev), {}) for rev in args.baseline
    ]
    sink = OtlpSink().__enter__() if args.traced or args.traced_ratio else None
    if sink is not None:  # this checkout again, tracing, exporting to the sink
        traced = {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.url}
        if args.traced:
            sources.append(("this, traced", ROOT, traced))
        if args.traced_ratio:
            sampled = {
                **traced,
                "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                "OTEL_TRACES_SAMPLER_ARG": str(args.traced_ratio),
            }
            sources.append((f"this, {args.traced_ratio:.0%} traced", ROOT, sampled))
    sources.append(("this", ROOT, {}))
    workers = [Worker(name, source, url, users_file, env) for name, source, env in sources]
    try:
        operations = args.operations.split(",")
        for operation in operations:  # same answers, or no figures
            digests = {
                w.name: w.ask({"command": "digest", "operation": operation}) for w in workers
            }
            if len(set(digests.values())) != 1:
                raise SystemExit(f"{operation}: the versions answer differently: {digests}")
        print(
            f"{args.rounds} rounds x {args.requests} sequential requests per version and "
            "operation, versions in turn within each round; CPU ms per request "
            "(process_time), median round (min to max); ratios: median of each round's ratio"
        )
        names = [w.name for w in workers]
        ratios = " | ".join(f"{name} / {names[-1]}" for name in names[:-1])
        print(f"| operation | {' | '.join(names)} | {ratios} |")
        print("| --- |" + " --- |" * (2 * len(names) - 1))
        for operation in operations:
            run = {"command": "run", "operation": operation, "requests": args.requests}
            for worker in workers:  # warm-up: caches, connections
                worker.ask(run)
            samples: dict[str, list[float]] = {name: [] for name in names}
            for round_ in range(args.rounds):
                order = workers if round_ % 2 == 0 else workers[::-1]
                for worker in order:
                    samples[worker.name].append(worker.ask(run) * 1000)
            cells = []
            for name in names:
                values = samples[name]
                median = statistics.median(values)
                cells.append(f"{median:.2f} ({min(values):.2f} to {max(values):.2f})")
            for name in names[:-1]:  # paired: the same round's load weighs on both
                paired = [a / b for a, b in zip(samples[name], samples[names[-1]], strict=True)]
                cells.append(f"{statistics.median(paired):.2f}")
            print(f"| {operation} | " + " | ".join(cells) + " |", flush=True)
    finally:
        for worker in workers:
            worker.stop()
        if sink is not None:
            print(f"The OTLP sink received {sink.spans} spans in {sink.exports} exports.")
            sink.__exit__()


# --- a worker --------------------------------------------------------------------------------


async def serve_commands(args: argparse.Namespace, user_ids: list[str], out: IO[str]) -> None:
    """Answer the driver's commands, one JSON line each, until its end of input."""
    import httpx

    from graphql_api.app import create_app
    from graphql_api.auth import Tokens
    from graphql_api.settings import Settings

    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=args.database_url,
        jwt_secret=SECRET,
        log_level="WARNING",
        metrics=False,
        graphiql=False,
    )
    tokens = [Tokens(settings).issue(user) for user in user_ids]
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:

            async def post(operation: str, index: int) -> bytes:
                body = {
                    "query": (OPERATIONS / f"{operation}.graphql").read_text(),
                    "variables": VARIABLES.get(operation, {}),
                }
                headers = {"Authorization": f"Bearer {tokens[index % len(tokens)]}"}
                response = await client.post("/graphql", json=body, headers=headers)
                if response.status_code != 200 or b'"errors"' in response.content:
                    raise RuntimeError(response.text[:300])
                return response.content

            async def run(operation: str, requests: int) -> float:
                body = {
                    "query": (OPERATIONS / f"{operation}.graphql").read_text(),
                    "variables": VARIABLES.get(operation, {}),
                }
                started = time.process_time()
                for index in range(requests):
                    headers = {"Authorization": f"Bearer {tokens[index % len(tokens)]}"}
                    response = await client.post("/graphql", json=body, headers=headers)
                    if response.status_code != 200 or b'"errors"' in response.content:
                        raise RuntimeError(response.text[:300])
                flush_spans()  # so this run's figure includes exporting its spans
                return (time.process_time() - started) / requests

            def flush_spans() -> None:
                tracing = getattr(app.state.services, "tracing", None)
                if tracing is not None:
                    tracing.provider.force_flush()

            async def digest(operation: str) -> str:
                hashed = hashlib.sha256()
                for index in range(min(len(tokens), 50)):
                    answer = json.loads(await post(operation, index))
                    hashed.update(json.dumps(answer, sort_keys=True).encode())
                return hashed.hexdigest()

            gc.collect()
            gc.freeze()
            for line in sys.stdin:
                message = json.loads(line)
                try:
                    if message["command"] == "ready":
                        result: Any = True
                    elif message["command"] == "digest":
                        result = await digest(message["operation"])
                    else:
                        result = await run(message["operation"], message["requests"])
                    out.write(json.dumps({"result": result}) + "\n")
                except Exception as exc:  # the driver reports it and stops
                    out.write(json.dumps({"error": repr(exc)}) + "\n")
                out.flush()


def work(args: argparse.Namespace) -> None:
    # Our answers go to the real stdout; anything the app prints goes to stderr.
    out = sys.stdout
    sys.stdout = sys.stderr
    sys.path.insert(0, args.source)
    user_ids = json.loads(Path(args.users_file).read_text())
    asyncio.run(serve_commands(args, user_ids, out))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default=f"{SERVER}/graphql_api_cpu_data")
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--operations", default=OPERATION_NAMES)
    parser.add_argument("--baseline", action="append", default=[], metavar="REV")
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument(
        "--traced",
        action="store_true",
        help="also run this checkout with tracing on (OTLP/HTTP to a local sink)",
    )
    parser.add_argument(
        "--traced-ratio",
        type=float,
        help="also run this checkout tracing this fraction of requests (0.1: a tenth)",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--source", help=argparse.SUPPRESS)
    parser.add_argument("--users-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        work(args)
    else:
        drive(args)


if __name__ == "__main__":
    main()
