"""Alembic environment: the URL comes from the application's settings, the target schema from
the SQLModel metadata, so `alembic` and `graphql-api migrate` always agree."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from graphql_api import models  # noqa: F401  (registers the tables on the metadata)
from graphql_api.db import create_engine
from graphql_api.migration import migration_lock
from graphql_api.settings import Settings

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = SQLModel.metadata


def _database_url() -> str:
    return config.attributes.get("database_url") or Settings().database_url


def _configure(**kwargs: object) -> None:
    context.configure(
        target_metadata=target_metadata,
        compare_type=True,
        render_as_batch=True,  # SQLite can only ALTER by copying tables
        **kwargs,  # type: ignore[arg-type]
    )


def run_migrations_offline() -> None:
    _configure(url=_database_url(), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def _run_on(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:  # graphql-api migrate's, in a transaction under the lock
        _run_on(connection)
        return
    # `alembic` run by hand takes the same lock as `graphql-api migrate`.
    engine = create_engine(Settings(database_url=_database_url()), request_limits=False)
    try:
        with engine.connect() as connection, migration_lock(connection), connection.begin():
            _run_on(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
