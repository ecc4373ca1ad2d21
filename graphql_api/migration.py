"""Schema migrations at deploy: `graphql-api migrate` upgrades under a lock that serialises
concurrent runs, and production `serve` checks the database is at the code's head instead.

The lock is a PostgreSQL session advisory lock on a fixed key, held on the migration's own
connection for the whole upgrade: a second `migrate` (another replica's deploy step, a retried
job) waits for the first, then reads the revision it left and has nothing to do. It needs a
session of its own, so migrations go over a direct connection, never a transaction-mode pooler
(PgBouncer, Neon's `-pooler` host) where a session lock would stay on a server connection that
the next client gets.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from graphql_api.db import create_engine
from graphql_api.settings import Settings

log = logging.getLogger(__name__)

ALEMBIC_INI = Path(__file__).resolve().parent.parent / "alembic.ini"

MIGRATION_LOCK_KEY = int.from_bytes(b"gqlapimg", "big")
"""The advisory lock key of migrations: the ASCII bytes of "gqlapimg" as a bigint,
7453858024028466535 (in `pg_locks`: classid 1735486561, objid 1885957479, objsubid 1)."""


INSUFFICIENT_PRIVILEGE = "42501"


class NotAtHead(RuntimeError):
    """The database's schema is not the one this code needs: `serve` refuses to start."""


@dataclass(frozen=True)
class Migration:
    """The database's revisions before and after `migrate`."""

    before: tuple[str, ...]
    after: tuple[str, ...]

    @property
    def changed(self) -> bool:
        return self.before != self.after


def alembic_config(database_url: str, connection: Connection | None = None) -> Config:
    """Alembic's configuration for a database; with `connection`, migrations run on it."""
    config = Config(str(ALEMBIC_INI))
    config.attributes["database_url"] = database_url
    config.attributes["configure_logging"] = False
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@contextmanager
def migration_lock(connection: Connection) -> Iterator[None]:
    """Hold the migration lock on `connection` (PostgreSQL), waiting while another run holds
    it. A session lock: it holds across the transactions that the caller runs under it, even a
    migration's own commit (an `autocommit_block`).

    SQLite gets no lock: it serves development, where one `migrate` runs at a time. Measured:
    three at once on a fresh file, all but one may fail ("database is locked"); one completes
    and the file is sound (integrity_check, schema). A transaction cannot serialise them: 0004
    commits midway to switch foreign keys off."""
    if connection.dialect.name != "postgresql":
        yield
        return
    connection.execute(sa.select(sa.func.pg_advisory_lock(MIGRATION_LOCK_KEY)))
    connection.commit()  # a session lock: it outlives this transaction and the ones to come
    try:
        yield
    finally:
        if connection.in_transaction():  # a failed upgrade's
            connection.rollback()
        connection.execute(sa.select(sa.func.pg_advisory_unlock(MIGRATION_LOCK_KEY)))
        connection.commit()


def migrate(settings: Settings, revision: str = "head") -> Migration:
    """Bring the database to `revision` (the newest by default), one run at a time."""
    engine = create_engine(settings, request_limits=False)
    try:
        with engine.connect() as connection, migration_lock(connection):
            with connection.begin():  # Alembic runs in it, read of the revision included
                before = _database_revisions(connection)
                command.upgrade(alembic_config(settings.database_url, connection), revision)
                after = _database_revisions(connection)
            return Migration(before, after)
    finally:
        engine.dispose()


def check_at_head(settings: Settings) -> None:
    """NotAtHead unless the database is at this code's head revision.

    A revision this code does not know passes, with a warning: a newer release has migrated the
    database, and migrations are written so that the release before them still runs on the new
    schema (old replicas must keep restarting during a rolling deploy, and a rollback of the
    code must start)."""
    script = ScriptDirectory.from_config(alembic_config(settings.database_url))
    heads = tuple(sorted(script.get_heads()))
    current = _current_revisions(settings)
    if current == heads:
        return
    known = {revision.revision for revision in script.walk_revisions()}
    if unknown := [revision for revision in current if revision not in known]:
        log.warning(
            "The database is at revision %s, which this release does not know (a newer "
            "release migrated it?); serving on the assumption that it is compatible.",
            ", ".join(unknown),
        )
        return
    at = f"at revision {', '.join(current)}" if current else "not migrated (no revision)"
    raise NotAtHead(
        f"The database is {at}; this release needs {', '.join(heads)}. In production, serve "
        "does not migrate: run `graphql-api migrate` (as the tables' owner, over a direct, not "
        "pooled, connection) first."
    )


def _current_revisions(settings: Settings) -> tuple[str, ...]:
    engine = create_engine(settings)
    try:
        with engine.connect() as connection:
            return _database_revisions(connection)
    except sa.exc.DBAPIError as exc:
        grant = (
            " The API's role needs SELECT on it, as on every table."
            if getattr(exc.orig, "pgcode", None) == INSUFFICIENT_PRIVILEGE
            else ""
        )
        raise NotAtHead(
            f"Could not read the database's schema revision (alembic_version): {exc.orig}{grant}"
        ) from None
    finally:
        engine.dispose()


def _database_revisions(connection: Connection) -> tuple[str, ...]:
    return tuple(sorted(MigrationContext.configure(connection).get_current_heads()))
