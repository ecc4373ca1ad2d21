"""The load benchmark: `make bench` (PostgreSQL; a tool, not a test).

Seeds a realistic data set, starts every target at once, then drives each with wrk using many
users' tokens, in interleaved rounds after a warm-up, and reports medians with their spread:

  api            this API (uvicorn, `--workers` processes)
  api-reference  the same, with COMPILED_EXECUTION off (graphql-core's executor for everything)
  api-naive      the same, with dataloaders off (one statement per row: what loaders buy)
  api-pgbouncer  the same through PgBouncer in transaction mode (DATABASE_POOLER=transaction), as
                 behind Neon's pooled endpoint; the bench starts the pooler (apt-get install
                 pgbouncer)
  api-unprepared the same, direct, with DATABASE_POOLER=transaction: what the pooler's mode
                 costs (no prepared statement kept: a Parse per statement) without the hop
  api-traced     the same, tracing every request, exported over OTLP/HTTP to a local sink
  pgl-jwt-rls    PostGraphile v4 with JWT claims and row-level security on user_id (like for like)
  pgl            PostGraphile v4 without either (the upper reference)
  sql-floor      the statements this API sends, replayed by pgbench (the raw SQL floor)

PostGraphile is installed from npm into bench/.work (never committed). Figures are ratios to
`api`, measured side by side on the same data, machine and run. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from otlp_sink import OtlpSink  # noqa: E402

from graphql_api.auth import Tokens  # noqa: E402
from graphql_api.cli import migrate  # noqa: E402
from graphql_api.seed import seed_bulk  # noqa: E402
from graphql_api.settings import Settings  # noqa: E402
from tests import pgbouncer  # noqa: E402

BENCH = ROOT / "bench"
WORK = BENCH / ".work"
OPERATIONS = BENCH / "operations"
PGL_OPERATIONS = BENCH / "postgraphile"
SECRET = "bench-secret-" + "s" * 40
PG_SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432"
PGL_ROLE = "bench_api"  # the role PostGraphile switches to from the JWT's `role` claim
PGL_LOGIN = "bench_pgl"  # a non-superuser login, so row-level security applies
API_LOGIN = "bench_app"  # the API's ordinary role: our own row-level security applies too
DEFAULT_VARIABLES: dict[str, dict[str, Any]] = {
    "task_list": {"first": 20},
    "tags_with_tasks": {"first": 20, "tasksFirst": 5},
    "conversations_with_last_messages": {"first": 20, "last": 5},
}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- data ------------------------------------------------------------------------------------


def database_url(name: str) -> str:
    return f"{PG_SERVER}/{name}"


def prepare_database(args: argparse.Namespace) -> str:
    """A seeded database; kept between runs (same name, same parameters) unless --reseed."""
    name = args.database or f"graphql_api_bench_{args.users}u_{args.tasks}t"
    server = sa.create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    with server.connect() as conn:
        exists = conn.execute(
            sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
        ).first()
        if exists and args.reseed:
            conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
            exists = None
        if not exists:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    server.dispose()
    url = database_url(name)
    settings = Settings(database_url=url, jwt_secret=SECRET)
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        migrate(settings)
        seeded = conn.execute(sa.text("SELECT count(*) FROM users")).scalar_one()
    if not seeded:
        log(f"seeding {args.users} users x {args.tasks} tasks, plus a light and a heavy user")
        seed_bulk(settings, users=args.users, tasks=args.tasks)
        seed_bulk(settings, users=1, tasks=1_000, seed=1)  # user{N}: 1k tasks
        seed_bulk(settings, users=1, tasks=100_000, seed=2)  # user{N+1}: 100k tasks
        vacuum(url)
    engine.dispose()
    prepare_postgraphile_roles(url)
    return url


def vacuum(url: str) -> None:
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text("VACUUM ANALYZE"))
    engine.dispose()


def prepare_postgraphile_roles(url: str) -> None:
    """A login role that can become `bench_api`, and RLS policies keyed on the JWT's `sub`."""
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    tables = [
        "users",
        "tasks",
        "tags",
        "task_tags",
        "task_relationships",
        "conversations",
        "messages",
    ]
    with engine.connect() as conn:
        for role, options in ((PGL_ROLE, "NOLOGIN"), (PGL_LOGIN, "LOGIN"), (API_LOGIN, "LOGIN")):
            if not conn.execute(
                sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}
            ).first():
                conn.execute(sa.text(f"CREATE ROLE {role} {options}"))
        conn.execute(sa.text(f"GRANT {PGL_ROLE} TO {PGL_LOGIN}"))
        conn.execute(
            sa.text(f"GRANT USAGE ON SCHEMA public TO {PGL_ROLE}, {PGL_LOGIN}, {API_LOGIN}")
        )
        conn.execute(
            sa.text(
                "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public "
                f"TO {API_LOGIN}"
            )
        )
        for table in tables:
            owner_column = "id" if table == "users" else "user_id"
            conn.execute(sa.text(f"GRANT SELECT ON {table} TO {PGL_ROLE}"))
            conn.execute(sa.text(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY"))
            conn.execute(sa.text(f"DROP POLICY IF EXISTS bench_jwt_owner ON {table}"))
            conn.execute(
                sa.text(
                    f"CREATE POLICY bench_jwt_owner ON {table} FOR SELECT TO {PGL_ROLE} "
                    f"USING ({owner_column} = current_setting('jwt.claims.sub', true))"
                )
            )
    engine.dispose()


@dataclass
class Users:
    ids: list[str]
    light: str
    heavy: str


def bench_users(url: str, sample: int) -> Users:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT u.id, count(t.id) FROM users u JOIN tasks t ON t.user_id = u.id "
                "GROUP BY u.id ORDER BY count(t.id), u.id"
            )
        ).all()
    engine.dispose()
    heavy = rows[-1][0]
    # The seeded 1,000-task user (a run that wrote tasks may have added a few to it).
    light = next(user for user, count in rows if count >= 1_000)
    regular = [user for user, count in rows if user not in {heavy, light}]
    return Users(regular[:sample], light, heavy)


def credentials_file(path: Path, users: list[str], token: Any) -> Path:
    path.write_text("".join(f"{token(user)}\t{user}\n" for user in users))
    return path


def pgl_token(user: str) -> str:
    now = int(time.time())
    claims = {"sub": user, "role": PGL_ROLE, "aud": "postgraphile", "iat": now, "exp": now + 86400}
    return jwt.encode(claims, SECRET, algorithm="HS256")


# --- processes and their CPU ---------------------------------------------------------------


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float] | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # ppid, cpu s


def process_tree(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))):
            parents[int(entry.name)] = stat[0]
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in tree:
                tree.add(pid)
                frontier.append(pid)
    return sorted(tree)


def cpu_by_pid(pids: list[int]) -> dict[int, float]:
    return {pid: stat[1] for pid in pids if (stat := _stat(pid))}


def postgres_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.post(url, json={"query": "{ __typename }"}, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not come up")


# --- targets ---------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    url: str = ""
    process: subprocess.Popen[bytes] | None = None
    credentials: Path | None = None
    bodies: dict[str, Path] = field(default_factory=dict)
    pooler: pgbouncer.PgBouncer | None = None  # in front of PostgreSQL for this target only

    def pids(self) -> list[int]:
        return process_tree(self.process.pid) if self.process else []

    def pooler_pids(self) -> list[int]:
        process = self.pooler.process if self.pooler else None
        return [process.pid] if process else []

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        if self.pooler:
            self.pooler.stop()


def start(
    command: list[str], env: dict[str, str], log_path: Path, cwd: Path = ROOT
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command,
        cwd=cwd,
        env={**os.environ, **env},
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def api_body(operation: str, variables: dict[str, Any]) -> str:
    return json.dumps(
        {"query": (OPERATIONS / f"{operation}.graphql").read_text(), "variables": variables}
    )


def start_api(
    name: str, url: str, workers: int, extra_env: dict[str, str], source: Path = ROOT
) -> Target:
    port = free_port()
    as_app = sa.make_url(url).set(username=API_LOGIN).render_as_string(hide_password=False)
    env = {
        "DATABASE_URL": as_app,
        "JWT_SECRET": SECRET,
        "LOG_LEVEL": "WARNING",
        "GRAPHIQL": "false",
        "DB_POOL_SIZE": "10",
        "DB_MAX_OVERFLOW": "10",
        **extra_env,
    }
    command = [
        sys.executable,
        "-m",
        "graphql_api.cli",
        "serve",
        "--no-migrate",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    env["PYTHONPATH"] = str(source)  # the checkout to serve: this one, or a baseline's
    process = start(command, env, WORK / f"{name}.log", cwd=source)
    target = Target(name, f"http://127.0.0.1:{port}/graphql", process)
    wait_for(target.url)
    return target


def start_api_through_pgbouncer(name: str, url: str, workers: int) -> Target:
    """The API behind a PgBouncer of its own in transaction mode, its pool as large as the
    API's (20 per worker), so that the pooler's hop and mode are measured, not a queue."""
    bouncer = pgbouncer.PgBouncer(url, [API_LOGIN], free_port(), default_pool_size=20 * workers)
    bouncer.start()
    try:
        target = start_api(name, bouncer.url(url), workers, {"DATABASE_POOLER": "transaction"})
    except BaseException:
        bouncer.stop()
        raise
    target.pooler = bouncer
    return target


def baseline_checkout(revision: str) -> Path:
    """A git worktree of `revision` in bench/.work, to serve it beside the current code."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", revision],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    path = WORK / f"baseline-{commit}"
    if not path.exists():
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(path), commit],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
    return path


def install_postgraphile() -> Path:
    binary = WORK / "postgraphile" / "node_modules" / ".bin" / "postgraphile"
    if not binary.exists():
        log("installing PostGraphile v4 from npm into bench/.work/postgraphile")
        (WORK / "postgraphile").mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--silent", "--no-audit", "--no-fund", "postgraphile@4"],
            cwd=WORK / "postgraphile",
            check=True,
        )
    return binary


def start_postgraphile(name: str, url: str, *, scoped: bool) -> Target:
    binary = install_postgraphile()
    port = free_port()
    database = sa.make_url(url).database
    login = PGL_LOGIN if scoped else "postgres"
    command = [
        str(binary),
        "-c",
        f"postgres://{login}@127.0.0.1:5432/{database}",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--schema",
        "public",
        "--disable-query-log",
        "--max-pool-size",
        "10",
    ]
    if scoped:
        command += ["--jwt-secret", SECRET, "--default-role", PGL_ROLE]
    process = start(command, {"NODE_ENV": "production"}, WORK / f"{name}.log")
    target = Target(name, f"http://127.0.0.1:{port}/graphql", process)
    wait_for(target.url)
    return target


def pgl_body(operation: str, variables: dict[str, Any]) -> str:
    query = (PGL_OPERATIONS / f"{operation}.graphql").read_text()
    return json.dumps({"query": query, "variables": {**variables, "userId": "__USER__"}})


# --- the SQL floor ---------------------------------------------------------------------------


def capture_statements(
    url: str, operation: str, users: list[str], *, loaders: bool = True
) -> list[list[str]]:
    """The exact statements (parameters inlined) this API sends for `operation`, per user."""
    import httpx
    from sqlalchemy import event

    from graphql_api.app import create_app
    from graphql_api.db import is_transaction_control

    settings = Settings(  # psycopg2, whose cursor inlines the parameters (`mogrify`)
        database_url=url,
        jwt_secret=SECRET,
        log_level="WARNING",
        use_dataloaders=loaders,
        db_async_driver=False,
    )
    app = create_app(settings)
    tokens = Tokens(settings)
    captured: list[str] = []

    def record(_conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if not is_transaction_control(statement):
            captured.append(cursor.mogrify(statement, parameters).decode())

    async def run() -> list[list[str]]:
        event.listen(app.state.services.database.engine, "before_cursor_execute", record)
        scripts = []
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
                for user in users:
                    captured.clear()
                    response = await client.post(
                        "/graphql",
                        content=api_body(operation, DEFAULT_VARIABLES[operation]),
                        headers={
                            "Authorization": f"Bearer {tokens.issue(user)}",
                            "Content-Type": "application/json",
                        },
                    )
                    assert "errors" not in response.json(), response.text
                    scripts.append(list(captured))
        return scripts

    return asyncio.run(run())


def pgbench(url: str, scripts: list[list[str]], connections: int, duration: int) -> dict[str, Any]:
    database = sa.make_url(url).database
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for index, statements in enumerate(scripts):
            path = Path(tmp) / f"request{index}.sql"
            body = "".join(re.sub(r"\s+", " ", s).strip() + ";\n" for s in statements)
            path.write_text(f"BEGIN;\n{body}ROLLBACK;\n")
            files += ["-f", str(path)]
        command = [
            "pgbench",
            "-n",
            "-M",
            "simple",
            "-c",
            str(connections),
            "-j",
            "2",
            "-T",
            str(duration),
            "-l",
            "--log-prefix",
            f"{tmp}/log",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            *files,
            database,
        ]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        latencies = sorted(
            int(line.split()[2])
            for log_file in Path(tmp).glob("log*")
            for line in log_file.read_text().splitlines()
        )
    tps = float(re.search(r"tps = ([\d.]+)", output).group(1))  # type: ignore[union-attr]
    return {
        "rps": tps,
        "p50_ms": latencies[len(latencies) // 2] / 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] / 1000,
        "requests": len(latencies),
        "failures": 0,
    }


# --- load ------------------------------------------------------------------------------------


def wrk(target: Target, operation: str, args: argparse.Namespace, duration: int) -> dict[str, Any]:
    command = [
        "wrk",
        "-t",
        "2",
        "-c",
        str(args.connections),
        "-d",
        f"{duration}s",
        "--latency",
        "-s",
        str(BENCH / "load.lua"),
        target.url,
        "--",
        str(target.credentials),
        str(target.bodies[operation]),
    ]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    summary = json.loads(output.strip().splitlines()[-1])
    seconds = summary["duration_us"] / 1e6
    return {
        "rps": summary["requests"] / seconds,
        "p50_ms": summary["p50_us"] / 1000,
        "p99_ms": summary["p99_us"] / 1000,
        "requests": summary["requests"],
        "failures": summary["failures"] + summary["socket_errors"],
    }


@contextmanager
def cpu_meter(pids: list[int], pooler: list[int]) -> Iterator[dict[str, float]]:
    """CPU seconds used by `pids` (the server), by `pooler` and by every PostgreSQL process
    while the block runs.

    Processes are sampled every 0.2 s, so backends that start and end inside the block (pgbench's
    connections) are counted too, up to their last sample."""
    before = {
        "server": cpu_by_pid(pids),
        "pooler": cpu_by_pid(pooler),
        "pg": cpu_by_pid(postgres_pids()),
    }
    latest = {key: dict(values) for key, values in before.items()}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.2):
            latest["server"].update(cpu_by_pid(pids))
            latest["pooler"].update(cpu_by_pid(pooler))
            latest["pg"].update(cpu_by_pid(postgres_pids()))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    result: dict[str, float] = {}
    try:
        yield result
    finally:
        stop.set()
        sampler.join()
        latest["server"].update(cpu_by_pid(pids))
        latest["pooler"].update(cpu_by_pid(pooler))
        latest["pg"].update(cpu_by_pid(postgres_pids()))
        for key in latest:
            result[f"{key}_cpu_s"] = sum(
                cpu - before[key].get(pid, 0.0) for pid, cpu in latest[key].items()
            )


def measure(
    target: Target,
    operation: str,
    args: argparse.Namespace,
    duration: int,
    floor: dict[str, list[list[str]]],
    url: str,
) -> dict[str, Any]:
    pids = target.pids()
    with cpu_meter(pids, target.pooler_pids()) as cpu:
        if target.name == "sql-floor":
            figures = pgbench(url, floor[operation], args.connections, duration)
        else:
            figures = wrk(target, operation, args, duration)
    requests = max(figures["requests"], 1)
    figures["server_cpu_ms"] = cpu["server_cpu_s"] * 1000 / requests
    figures["pg_cpu_ms"] = cpu["pg_cpu_s"] * 1000 / requests
    figures["pooler_cpu_ms"] = cpu["pooler_cpu_s"] * 1000 / requests
    return figures


def median_spread(values: list[float]) -> str:
    if not values:
        return "n/a"
    middle = statistics.median(values)
    return f"{middle:,.1f} ({min(values):,.1f} to {max(values):,.1f})"


def report(results: dict[tuple[str, str], list[dict[str, Any]]], extra: dict[str, Any]) -> str:
    lines = []
    operations = sorted({operation for _, operation in results})
    for operation in operations:
        base = [r["rps"] for r in results.get(("api", operation), [])]
        base_rps = statistics.median(base) if base else None
        lines += [
            f"\n### {operation}\n",
            "| target | req/s | ratio to api | p50 ms | p99 ms | server CPU ms/req | "
            "PostgreSQL CPU ms/req | SQL/req | failures |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for (target, op), runs in results.items():
            if op != operation:
                continue
            rps = [r["rps"] for r in runs]
            ratio = f"{statistics.median(rps) / base_rps:.2f}" if base_rps else "n/a"
            statements = extra.get("statements", {}).get(f"{target}/{operation}", "")
            lines.append(
                f"| {target} | {median_spread(rps)} | {ratio} | "
                f"{median_spread([r['p50_ms'] for r in runs])} | "
                f"{median_spread([r['p99_ms'] for r in runs])} | "
                f"{median_spread([r['server_cpu_ms'] for r in runs])} | "
                f"{median_spread([r['pg_cpu_ms'] for r in runs])} | {statements} | "
                f"{sum(r['failures'] for r in runs)} |"
            )
        lines += [
            f"\nPgBouncer's own CPU, beside {target}'s: "
            f"{median_spread([r['pooler_cpu_ms'] for r in runs])} ms/req"
            for (target, op), runs in results.items()
            if op == operation and any(r["pooler_cpu_ms"] for r in runs)
        ]
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--tasks", type=int, default=100, help="tasks per user")
    parser.add_argument("--reseed", action="store_true")
    parser.add_argument("--database", help="the database's name (default: by data set size)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers of the API")
    parser.add_argument("--sample-users", type=int, default=500, help="users whose tokens load")
    parser.add_argument(
        "--targets",
        default="api,api-naive,pgl-jwt-rls,pgl,sql-floor",
        help="comma-separated: api, api-reference, api-naive, api-pgbouncer, api-unprepared, "
        "api-traced, pgl-jwt-rls, pgl, sql-floor",
    )
    parser.add_argument("--operations", default=",".join(DEFAULT_VARIABLES))
    parser.add_argument("--page-cost", action="store_true", help="also compare 1k vs 100k tasks")
    parser.add_argument(
        "--baseline", help="a git revision to serve beside the current code, as api@REV"
    )
    parser.add_argument("--no-live", action="store_true", help="skip live updates' costs")
    parser.add_argument(
        "--no-write-cost", action="store_true", help="skip what a write pays for the feed"
    )
    import live  # bench/live.py (which imports this module)
    import write_cost

    live.add_arguments(parser)
    write_cost.add_arguments(parser)
    return parser.parse_args()


def start_targets(args: argparse.Namespace, url: str, sink: OtlpSink) -> list[Target]:
    wanted = args.targets.split(",")
    targets = []
    if "api" in wanted:
        targets.append(start_api("api", url, args.workers, {}))
    if args.baseline:
        source = baseline_checkout(args.baseline)
        targets.append(start_api(f"api@{args.baseline}", url, args.workers, {}, source))
    if "api-reference" in wanted:
        reference = {"COMPILED_EXECUTION": "false"}
        targets.append(start_api("api-reference", url, args.workers, reference))
    if "api-naive" in wanted:
        targets.append(start_api("api-naive", url, args.workers, {"USE_DATALOADERS": "false"}))
    if "api-pgbouncer" in wanted:
        targets.append(start_api_through_pgbouncer("api-pgbouncer", url, args.workers))
    if "api-unprepared" in wanted:
        unprepared = {"DATABASE_POOLER": "transaction"}
        targets.append(start_api("api-unprepared", url, args.workers, unprepared))
    if "api-traced" in wanted:  # every request sampled; spans batched and sent as in production
        traced = {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.url}
        targets.append(start_api("api-traced", url, args.workers, traced))
    if "pgl-jwt-rls" in wanted:
        targets.append(start_postgraphile("pgl-jwt-rls", url, scoped=True))
    if "pgl" in wanted:
        targets.append(start_postgraphile("pgl", url, scoped=False))
    return targets


def no_token(_user: str) -> str:
    return ""


def prepare_requests(
    targets: list[Target], users: Users, tokens: Tokens, operations: list[str]
) -> None:
    """Each target's credentials (many users) and request bodies, as files for wrk."""
    for target in targets:
        is_api = target.name.startswith("api")
        token = tokens.issue if is_api else pgl_token if target.name == "pgl-jwt-rls" else no_token
        target.credentials = credentials_file(WORK / f"{target.name}.credentials", users.ids, token)
        for operation in operations:
            body = api_body if is_api else pgl_body
            path = WORK / f"{target.name}.{operation}.json"
            path.write_text(body(operation, DEFAULT_VARIABLES[operation]))
            target.bodies[operation] = path


def statement_counts(url: str, operations: list[str], user: str) -> dict[str, Any]:
    counts: dict[str, Any] = {}
    for operation in operations:
        with_loaders = len(capture_statements(url, operation, [user])[0])
        for target in ("api", "api-pgbouncer", "api-unprepared", "api-traced", "sql-floor"):
            counts[f"{target}/{operation}"] = with_loaders
        naive = capture_statements(url, operation, [user], loaders=False)[0]
        counts[f"api-naive/{operation}"] = len(naive)
        counts[f"pgl-jwt-rls/{operation}"] = "1 (+2 for JWT)"
        counts[f"pgl/{operation}"] = 1
    return counts


def measure_page_cost(
    api: Target, users: Users, tokens: Tokens, args: argparse.Namespace, url: str
) -> dict[str, list[dict[str, Any]]]:
    """The first page of task_list, with and without its totalCount (which must count every
    task), for a user with 1k tasks and for one with 100k."""
    page_cost: dict[str, list[dict[str, Any]]] = {}
    saved = api.credentials, dict(api.bodies)
    variants = {"page only": False, "page and totalCount": True}
    for variant, with_count in variants.items():
        body = WORK / f"api.task_list.count-{with_count}.json"
        body.write_text(api_body("task_list", {"first": 20, "withCount": with_count}))
        api.bodies["task_list"] = body
        for label, user in (("1k tasks", users.light), ("100k tasks", users.heavy)):
            api.credentials = credentials_file(
                WORK / f"api.{user}.credentials", [user], tokens.issue
            )
            page_cost[f"{variant}, {label}"] = [
                measure(api, "task_list", args, args.duration, {}, url) for _ in range(args.rounds)
            ]
    api.credentials, api.bodies = saved
    return page_cost


def main() -> None:
    args = parse_args()
    for tool in ("wrk", "pgbench", "npm"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: apt-get install -y wrk postgresql-client npm")
    if "api-pgbouncer" in args.targets.split(",") and not pgbouncer.available():
        sys.exit("pgbouncer is missing (target api-pgbouncer): apt-get install -y pgbouncer")
    WORK.mkdir(parents=True, exist_ok=True)
    url = prepare_database(args)
    users = bench_users(url, args.sample_users)
    tokens = Tokens(Settings(database_url=url, jwt_secret=SECRET))
    operations = args.operations.split(",")

    sink = OtlpSink().__enter__()
    targets = start_targets(args, url, sink)
    try:
        prepare_requests(targets, users, tokens, operations)
        floor: dict[str, list[list[str]]] = {}
        if "sql-floor" in args.targets.split(","):
            floor = {op: capture_statements(url, op, users.ids[:20]) for op in operations}
            targets.append(Target("sql-floor"))
        statements = statement_counts(url, operations, users.ids[0])

        log("warm-up")
        for target in targets:
            for operation in operations:
                measure(target, operation, args, args.warmup, floor, url)
        results: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for round_number in range(1, args.rounds + 1):
            for operation in operations:
                for target in targets:
                    log(f"round {round_number}: {target.name} {operation}")
                    figures = measure(target, operation, args, args.duration, floor, url)
                    results.setdefault((target.name, operation), []).append(figures)
        memory = {t.name: rss_mib(t.pids()) for t in targets if t.process}
        page_cost = {}
        if args.page_cost and targets[0].name == "api":
            page_cost = measure_page_cost(targets[0], users, tokens, args, url)
    finally:
        for target in targets:
            target.stop()
        sink.__exit__()

    text = [
        f"## Run of {time.strftime('%Y-%m-%d %H:%M')} ({os.cpu_count()} cores, {platform_line()})",
        f"{args.users} users x {args.tasks} tasks; wrk -t2 -c{args.connections}, "
        f"{args.rounds} interleaved rounds of {args.duration}s after {args.warmup}s warm-up; "
        f"API workers: {args.workers}. Medians (min to max).",
        report(results, {"statements": statements}),
        "\n### Server memory (RSS after the run)\n",
        *(f"- {name}: {mib:,.0f} MiB" for name, mib in memory.items()),
    ]
    if sink.exports:
        text.append(f"\nThe OTLP sink received {sink.spans:,} spans in {sink.exports:,} exports.")
    if page_cost:
        text.append("\n### First page of task_list: a user with 1k tasks vs one with 100k\n")
        text += [
            f"- {label}: {median_spread([r['rps'] for r in runs])} req/s, "
            f"p99 {median_spread([r['p99_ms'] for r in runs])} ms"
            for label, runs in page_cost.items()
        ]
    if not args.no_live:
        import live

        log("live updates: idle subscribers, then commit-to-client latency under load")
        text.append("\n## Live updates (bench/live.py)")
        text.append(live.measure(url, args))
    if not args.no_write_cost:
        import write_cost

        log("live updates: what a write pays for the change feed, in-process")
        text.append("\n### What a write pays for the change feed (bench/write_cost.py)\n")
        # On a database of its own: its writes would change the load's data set.
        own = sa.make_url(url).set(database="graphql_api_write_cost")
        text.append(write_cost.measure(own.render_as_string(hide_password=False), args))
    output = "\n".join(text)
    print(output)
    (WORK / f"results-{time.strftime('%Y%m%d-%H%M%S')}.md").write_text(output)


def platform_line() -> str:
    import platform

    return f"Python {platform.python_version()}, {platform.machine()}"


if __name__ == "__main__":
    main()
