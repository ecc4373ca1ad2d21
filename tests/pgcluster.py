"""A throwaway PostgreSQL cluster of the test's own (initdb + pg_ctl on a free port), for tests
that stop and restart the server: they must never touch the shared one."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.live import free_port


def _bin_dir() -> Path | None:
    found = shutil.which("initdb") or shutil.which("pg_ctl")
    if found and (Path(found).resolve().parent / "initdb").exists():
        return Path(found).resolve().parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), reverse=True)
    return candidates[0].parent if candidates else None


def available() -> bool:
    return _bin_dir() is not None


class Cluster:
    def __init__(self) -> None:
        bin_dir = _bin_dir()
        assert bin_dir is not None, "PostgreSQL server binaries are not installed"
        self.bin_dir = bin_dir
        # A directory of its own: the server's user must be able to reach it.
        self.root = Path(tempfile.mkdtemp(prefix="graphql-api-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        # initdb refuses to run as root: run the server as the `postgres` system user then.
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.root, "postgres")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        command = [*self.as_user, str(self.bin_dir / tool), *args]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def _ctl(self, action: str) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.data / "server.log"),
            "-m",
            "fast",
            "-w",
            action,
        )

    def start(self) -> None:
        if not self.data.exists():
            self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self._ctl("start")

    def restart(self) -> None:
        self._ctl("restart")

    def pause(self) -> None:
        """Stop the server, keeping its data for `start`."""
        self._ctl("stop")

    def stop(self) -> None:
        try:
            self._ctl("stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
