"""Helpers for tests that need the API as a real server, or tools from npm."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx

from graphql_api.cli import PROJECT_ROOT, migrate
from tests.conftest import JWT_SECRET, make_settings
from tests.helpers import Api

NODE_WORK = PROJECT_ROOT / "tests" / ".work"


def npm_ci(source: Path, files: list[str]) -> Path:
    """`npm ci` of the committed lockfile in `source` into tests/.work/<source's name>, with
    `files` copied beside it; redone only when one of them changes. The folder."""
    folder = NODE_WORK / source.name
    digest = hashlib.sha256(b"".join((source / name).read_bytes() for name in files)).hexdigest()
    marker = folder / ".installed"
    if not marker.exists() or marker.read_text() != digest:
        folder.mkdir(parents=True, exist_ok=True)
        for name in files:
            shutil.copy(source / name, folder / name)
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--silent"],
            cwd=folder,
            check=True,
            capture_output=True,
            timeout=600,
        )
        marker.write_text(digest)
    return folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


CLI = [sys.executable, "-m", "graphql_api.cli"]
"""`graphql-api`, as this interpreter runs it."""


def cli_environment(**env: str) -> dict[str, str]:
    """The environment of a `graphql-api` process under test: cheap hashing, a fixed secret."""
    return {
        **os.environ,
        "JWT_SECRET": JWT_SECRET,
        "ARGON2_TIME_COST": "1",
        "ARGON2_MEMORY_KIB": "64",
        "LOG_LEVEL": "WARNING",
        **env,
    }


@contextmanager
def running_server(database_url: str, log: Path, *args: str, **env: str) -> Iterator[str]:
    """The API under uvicorn, in a process of its own; yields its base URL."""
    with live_server(database_url, log, *args, **env) as (base, _):
        yield base


@contextmanager
def live_server(
    database_url: str, log: Path, *args: str, **env: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The API on a migrated database, under `graphql-api serve --no-migrate` with `args`, in a
    process of its own; yields its base URL and process."""
    migrate(make_settings(database_url))
    with serve_process(log, "--no-migrate", *args, DATABASE_URL=database_url, **env) as running:
        yield running


@contextmanager
def serve_process(
    log: Path, *args: str, **env: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`graphql-api serve` with `args` and `env` (DATABASE_URL among them), once it answers
    /healthz; yields its base URL and process, and stops it afterwards."""
    port = free_port()
    process = subprocess.Popen(
        [*CLI, "serve", "--port", str(port), *args],
        env=cli_environment(**env),
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            if process.poll() is not None:
                raise RuntimeError(f"the server exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"the server did not start: {log.read_text()[-2000:]}")
        yield base, process
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:  # a server stuck in a loop ignores SIGTERM
            process.kill()
            process.wait(10)


@asynccontextmanager
async def api_at(base: str) -> AsyncIterator[Api]:
    """The test helpers' `Api`, over real HTTP to a live server (no app object to inspect)."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        yield Api(client, app=None)


def cpu_seconds(process: subprocess.Popen[bytes]) -> float:
    """CPU time (user + system) a live process has used so far, from /proc."""
    fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sign_up(base: str, email: str) -> str:
    response = httpx.post(
        f"{base}/graphql",
        json={
            "query": 'mutation($e: String!) { signUp(input: {email: $e, password: "password123"}) { token } }',
            "variables": {"e": email},
        },
    )
    token: str = response.json()["data"]["signUp"]["token"]
    return token


def graphiql_assets(directory: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`graphql-api graphiql-assets DIR`, as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "graphql_api.cli", "graphiql-assets", str(directory)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
