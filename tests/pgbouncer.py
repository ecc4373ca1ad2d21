"""PgBouncer in transaction mode (Debian's `pgbouncer`), started by a test (or the benchmark) on
a free port in front of a PostgreSQL server: the pooler the API meets at Neon's pooled endpoint.
Nothing here imports the test suite's fixtures, so that `bench/run.py` uses it too."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def available() -> bool:
    return os.path.exists(PGBOUNCER)


class PgBouncer:
    """One PgBouncer in front of `server_url`'s server, for every database there (trust
    authentication, as the test server has; `users` are the roles it lets in)."""

    def __init__(
        self, server_url: str, users: Sequence[str], port: int, **settings: str | int
    ) -> None:
        server = sa.make_url(server_url)
        # A directory of its own: PgBouncer refuses to run as root, so it runs as `postgres`.
        self.root = Path(tempfile.mkdtemp(prefix="graphql-api-pgbouncer-"))
        self.port = port
        self.log = self.root / "pgbouncer.log"
        options: dict[str, str | int] = {
            "listen_addr": "127.0.0.1",
            "listen_port": self.port,
            "unix_socket_dir": "",
            "auth_type": "trust",
            "auth_file": str(self.root / "users.txt"),
            "pool_mode": "transaction",
            "default_pool_size": 4,
            "max_client_conn": 200,
            **settings,
        }
        (self.root / "users.txt").write_text("".join(f'"{user}" ""\n' for user in users))
        (self.root / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host={server.host or '127.0.0.1'} port={server.port or 5432}\n"
            "[pgbouncer]\n" + "".join(f"{name} = {value}\n" for name, value in options.items())
        )
        self.as_user = ["-u", "postgres"] if os.geteuid() == 0 else []
        if self.as_user:
            for path in (self.root, *self.root.iterdir()):
                shutil.chown(path, "postgres")
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, url: str) -> str:
        """`url` (a role and database on the server) through the pooler."""
        through = sa.make_url(url).set(host="127.0.0.1", port=self.port)
        return through.render_as_string(hide_password=False)

    def start(self) -> None:
        command = [PGBOUNCER, *self.as_user, str(self.root / "pgbouncer.ini")]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited:\n{self.log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"pgbouncer did not listen:\n{self.log.read_text()}")

    def stop(self) -> None:
        try:
            if self.process is not None and self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def running(server_url: str, users: Sequence[str], **settings: str | int) -> Iterator[PgBouncer]:
    """A PgBouncer on a free port, stopped (and its directory removed) afterwards."""
    from tests.live import free_port  # which imports the suite's fixtures: not at module level

    bouncer = PgBouncer(server_url, users, free_port(), **settings)
    try:
        bouncer.start()
        yield bouncer
    finally:
        bouncer.stop()
