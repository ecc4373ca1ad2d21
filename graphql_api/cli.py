"""`graphql-api`: serve, migrate, token, seed, purge, export-schema, schema-diff,
graphiql-assets."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from graphql_api.settings import Settings, get_settings

if TYPE_CHECKING:
    from graphql_api.migration import Migration

T = TypeVar("T")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_QUERY = """{
  me { email }
  tasks(first: 10) {
    totalCount
    edges { node { id title priority completed dueDate isOverdue tags { name color } } }
    pageInfo { hasNextPage endCursor }
  }
}"""


def migrate(settings: Settings, revision: str = "head") -> Migration:
    """Bring the database to `revision` (the newest by default), one run at a time."""
    from graphql_api import migration

    return migration.migrate(settings, revision)


def _migrate(_: argparse.Namespace, settings: Settings) -> None:
    result = migrate(settings)
    after = ", ".join(result.after)
    if result.changed:
        print(f"Migrated from {', '.join(result.before) or 'an empty database'} to {after}.")
    else:
        print(f"The database is at {after} already: nothing to do.")


def _serve(args: argparse.Namespace, settings: Settings) -> None:
    import uvicorn

    from graphql_api.migration import NotAtHead, check_at_head

    if settings.environment == "production":
        # Replicas start at once, as a role that does not own the tables: migrating is the
        # deploy step's job (`graphql-api migrate`); serving only checks it was done.
        try:
            check_at_head(settings)
        except NotAtHead as exc:
            raise SystemExit(str(exc)) from None
    elif not args.no_migrate:
        migrate(settings)
    if settings.prometheus_multiproc_dir is not None:
        _empty_metrics_dir(settings.prometheus_multiproc_dir)
    else:  # set but empty: unset, as the settings read it (not the working directory)
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    uvicorn.run(
        "graphql_api.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=settings.log_level.lower(),
        log_config=None,  # the app configures logging (request ids, JSON) for everything
        access_log=args.access_log,
        # Bound the request head while it is parsed (a GET's query string is part of it); see
        # graphql_api/bounded_http.py for httptools, which uvicorn leaves unbounded.
        http=_http_protocol(),
        h11_max_incomplete_event_size=settings.max_header_bytes + settings.max_body_bytes,
        proxy_headers=_given(args.proxy_headers, settings.proxy_headers),
        forwarded_allow_ips=_given(args.forwarded_allow_ips, settings.forwarded_allow_ips),
        # On SIGTERM uvicorn stops accepting, lets in-flight requests finish for this long, then
        # cancels them. Open subscriptions are closed first, by uvicorn: it ends WebSockets with
        # 1012 (service restart), which tells clients to reconnect (to another replica) and
        # resume from their last cursor.
        timeout_graceful_shutdown=_given(
            args.timeout_graceful_shutdown, settings.timeout_graceful_shutdown
        ),
        ws_max_size=settings.max_body_bytes,  # a WebSocket message: as large as a request body
    )


def _given(flag: T | None, setting: T) -> T:
    """A command-line flag wins over its setting."""
    return setting if flag is None else flag


def _empty_metrics_dir(directory: Path) -> None:
    """Once, before the workers start: the last run's counts must not add to this one's. The
    workers inherit the variable (prometheus-client reads it from the environment, also when
    it came from a .env file here); prometheus-client is not imported in this process yet."""
    directory.mkdir(parents=True, exist_ok=True)
    for kind in ("counter", "gauge", "histogram", "summary"):  # prometheus-client's files only
        for file in directory.glob(f"{kind}_*.db"):
            file.unlink()
    if others := sorted(file.name for file in directory.glob("*.db")):
        # /metrics reads every *.db file there as prometheus-client's: refuse rather than fail
        # each scrape (or delete someone's database)
        raise SystemExit(
            f"PROMETHEUS_MULTIPROC_DIR={directory} must be a folder of its own; it holds "
            f"{', '.join(others)}."
        )
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)


def _http_protocol() -> str:
    """uvicorn's default parser, httptools, with a head limit; h11 when it is not installed."""
    try:
        import httptools  # noqa: F401
    except ImportError:
        return "h11"
    return "graphql_api.bounded_http:BoundedHttpToolsProtocol"


def _token(args: argparse.Namespace, settings: Settings) -> None:
    from graphql_api.seed import token_for

    try:
        print(token_for(settings, args.user, create=args.create))
    except LookupError as exc:
        raise SystemExit(str(exc)) from None


def _seed(args: argparse.Namespace, settings: Settings) -> None:
    from graphql_api import seed

    if args.demo:
        if not seed.seed_demo(settings):
            print("The database has data already: no demo data added.", file=sys.stderr)
        try:
            token = seed.token_for(settings, seed.DEMO_EMAIL, create=False)
        except LookupError:
            return
        print(
            f"Demo user: {seed.DEMO_EMAIL} (password: {seed.DEMO_PASSWORD})\n\n"
            "Paste into GraphiQL's Headers tab:\n\n"
            f'{{"Authorization": "Bearer {token}"}}\n\nThen run this query:\n\n{SAMPLE_QUERY}'
        )
        return
    seed.seed_bulk(settings, users=args.users, tasks=args.tasks)


def _days(text: str) -> float:
    try:
        days = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of days: {text!r}") from None
    if not 0 <= days < 100_000:
        raise argparse.ArgumentTypeError("DAYS goes from 0 (all the trash) to 99999")
    return days


def _purge(args: argparse.Namespace, settings: Settings) -> None:
    from datetime import timedelta

    from graphql_api.purge import purge_trash

    result = purge_trash(settings, older_than=timedelta(days=args.older_than))
    counts = result.counts
    print(
        f"Purged what was trashed before {result.trashed_before.isoformat(timespec='seconds')}, "
        "with its tag links, subtask links and messages:\n"
        f"  tasks: {counts.tasks}\n  tags: {counts.tags}\n"
        f"  conversations: {counts.conversations}\n  users: {result.users}\n"
        "Forgot the change feed's entries from before "
        f"{result.changes_before.isoformat(timespec='seconds')}: {result.changes}"
    )


def _export_schema(args: argparse.Namespace, _: Settings) -> None:
    from graphql_api.reference import schema_reference
    from graphql_api.schema import schema

    sdl = schema.as_str() + "\n"
    if args.output == "-":
        sys.stdout.write(sdl)
    else:
        Path(args.output).write_text(sdl)
    if args.reference:
        Path(args.reference).write_text(schema_reference(schema._schema))


def schema_changes(old_sdl: str, new_sdl: str) -> tuple[list[str], list[str]]:
    """(breaking, dangerous) changes from one SDL to the next, as graphql-core finds them."""
    from graphql import build_schema, find_breaking_changes, find_dangerous_changes

    old, new = build_schema(old_sdl), build_schema(new_sdl)
    breaking = [f"{c.type.name}: {c.description}" for c in find_breaking_changes(old, new)]
    dangerous = [f"{c.type.name}: {c.description}" for c in find_dangerous_changes(old, new)]
    return breaking, dangerous


def _schema_diff(args: argparse.Namespace, _: Settings) -> None:
    import subprocess

    shown = subprocess.run(  # noqa: S603  (git with a revision name: a developer's own input)
        ["git", "show", f"{args.against}:schema.graphql"],  # noqa: S607
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if shown.returncode != 0:
        print(f"No schema.graphql at {args.against}: nothing to compare.")
        return
    breaking, dangerous = schema_changes(shown.stdout, Path(args.schema).read_text())
    for title, changes in (("Breaking", breaking), ("Dangerous", dangerous)):
        print(f"{title} changes since {args.against}: {len(changes)}")
        for change in changes:
            print(f"  - {change}")
    if breaking and args.strict:
        raise SystemExit(1)


def _graphiql_assets(args: argparse.Namespace, _: Settings) -> None:
    from graphql_api.graphiql_assets import AssetsError, fetch_graphiql_assets

    directory = Path(args.directory).resolve()
    try:
        fetched = fetch_graphiql_assets(directory)
    except AssetsError as exc:
        raise SystemExit(str(exc)) from None
    for package in fetched:
        print(f"fetched {package.folder}")
    if not fetched:
        print(f"{directory} has GraphiQL's packages already")
    print(f"Serve GraphiQL's scripts from this server: GRAPHIQL_ASSETS_DIR={directory}")


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="graphql-api", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)

    serve = commands.add_parser(
        "serve",
        help="serve the API with uvicorn (outside production, migrating first)",
        description="Serve the API with uvicorn. With ENVIRONMENT=production it never migrates: "
        "it refuses to start unless the database is at this release's revision (run "
        "`graphql-api migrate` first). Elsewhere it applies pending migrations first.",
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    serve.add_argument(
        "--no-migrate", action="store_true", help="outside production: skip pending migrations"
    )
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.add_argument(
        "--proxy-headers",
        action=argparse.BooleanOptionalAction,
        help="client address from X-Forwarded-For when the peer is trusted (PROXY_HEADERS)",
    )
    serve.add_argument(
        "--forwarded-allow-ips",
        metavar="IPS",
        help="trusted proxies: addresses or networks, comma-separated (FORWARDED_ALLOW_IPS)",
    )
    serve.add_argument(
        "--timeout-graceful-shutdown",
        type=int,
        metavar="SECONDS",
        help="after SIGTERM, how long in-flight requests may finish (TIMEOUT_GRACEFUL_SHUTDOWN)",
    )
    serve.set_defaults(run=_serve)

    migrate_command = commands.add_parser(
        "migrate",
        help="apply pending migrations: the deploy step (one run at a time)",
        description="Bring the database to this release's revision. Run it at deploy, as the "
        "tables' owner, over a direct (not pooled) connection; concurrent runs wait for each "
        "other (a PostgreSQL advisory lock), and the later ones find nothing to do.",
    )
    migrate_command.set_defaults(run=_migrate)

    token = commands.add_parser("token", help="print a token for a user, for local use")
    token.add_argument("--user", required=True, metavar="EMAIL")
    token.add_argument("--create", action="store_true", help="create the user if missing")
    token.set_defaults(run=_token)

    seed = commands.add_parser("seed", help="add demo data, or a large data set")
    seed.add_argument("--demo", action="store_true", help="a demo user, if the database is empty")
    seed.add_argument("--users", type=int, default=10)
    seed.add_argument("--tasks", type=int, default=100, help="tasks per user")
    seed.set_defaults(run=_seed)

    purge = commands.add_parser(
        "purge",
        help="delete for good, across all users, what has been in the trash over DAYS days",
        description="Delete for good, across all users, the tasks, tags and conversations "
        "trashed more than DAYS days ago, with their tag links, subtask links and messages, "
        "and the change feed's entries older than CHANGES_RETENTION_DAYS. "
        "Run it as the tables' owner, like migrate.",
    )
    purge.add_argument(
        "--older-than", type=_days, required=True, metavar="DAYS", help="0 empties all trash"
    )
    purge.set_defaults(run=_purge)

    export = commands.add_parser("export-schema", help="write the schema as SDL")
    export.add_argument("--output", default="schema.graphql", help="a path, or - for stdout")
    export.add_argument("--reference", metavar="PATH", help="also write the Markdown reference")
    export.set_defaults(run=_export_schema)

    diff = commands.add_parser(
        "schema-diff", help="list breaking changes of schema.graphql since a git revision"
    )
    diff.add_argument("--against", default="HEAD~1", help="the revision to compare with")
    diff.add_argument("--schema", default=str(PROJECT_ROOT / "schema.graphql"))
    diff.add_argument("--strict", action="store_true", help="exit 1 on breaking changes")
    diff.set_defaults(run=_schema_diff)

    assets = commands.add_parser(
        "graphiql-assets",
        help="fetch GraphiQL's scripts into DIR, for GRAPHIQL_ASSETS_DIR (no internet needed then)",
        description="Fetch with npm the packages GraphiQL's page loads from unpkg.com, at the "
        "versions it names, into DIR (laid out like unpkg.com); with GRAPHIQL_ASSETS_DIR=DIR the "
        "server serves them itself, so GraphiQL works on a machine without internet access. "
        "Packages DIR has already are kept.",
    )
    assets.add_argument("directory", metavar="DIR")
    assets.set_defaults(run=_graphiql_assets)
    return root


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    args.run(args, get_settings())


if __name__ == "__main__":
    main()
