"""The Alembic history: it round-trips, it matches the models, and the database enforces the
rules the application relies on (no cross-user links, unique live tag names)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel

from graphql_api.cli import PROJECT_ROOT
from graphql_api.models import TAGS, TASK_TAGS, TASKS, USERS, utcnow
from tests.conftest import BACKENDS, Backend, throwaway_postgresql_database


@pytest.fixture(params=BACKENDS)
def empty_database(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[str]:
    """A database with no tables at all, of its own (migrations must not touch the shared one)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/migrations.db"
        return
    with throwaway_postgresql_database("migrations") as url:
        yield url


def alembic_config(url: str) -> Config:
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.attributes["database_url"] = url
    config.attributes["configure_logging"] = False
    return config


def table_names(url: str) -> set[str]:
    engine = sa.create_engine(url)
    names = set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
    engine.dispose()
    return names


def test_upgrade_downgrade_upgrade_round_trips(empty_database: str) -> None:
    config = alembic_config(empty_database)
    expected = {table.name for table in SQLModel.metadata.sorted_tables}

    command.upgrade(config, "head")
    assert table_names(empty_database) == expected
    command.downgrade(config, "base")
    assert table_names(empty_database) == set()
    command.upgrade(config, "head")
    assert table_names(empty_database) == expected


@pytest.mark.filterwarnings("ignore:.*expression-based index:UserWarning")
@pytest.mark.filterwarnings("ignore:.*expression-based index:sqlalchemy.exc.SAWarning")
def test_models_and_migrations_agree(empty_database: str) -> None:
    command.upgrade(alembic_config(empty_database), "head")
    engine = sa.create_engine(empty_database)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences = compare_metadata(context, SQLModel.metadata)
    engine.dispose()
    assert differences == []


def _user(conn: sa.Connection) -> str:
    user_id = str(uuid.uuid4())
    now = utcnow()
    conn.execute(
        sa.insert(USERS).values(
            id=user_id, email=f"{user_id}@example.com", name="", created_at=now, updated_at=now
        )
    )
    return user_id


def _task(conn: sa.Connection, user_id: str) -> uuid.UUID:
    task_id = uuid.uuid4()
    now = utcnow()
    conn.execute(
        sa.insert(TASKS).values(
            user_id=user_id,
            id=task_id,
            title="t",
            completed=False,
            priority="medium",
            created_at=now,
            updated_at=now,
        )
    )
    return task_id


def _tag(conn: sa.Connection, user_id: str, name: str) -> uuid.UUID:
    tag_id = uuid.uuid4()
    now = utcnow()
    conn.execute(
        sa.insert(TAGS).values(
            user_id=user_id, id=tag_id, name=name, color="#000000", created_at=now, updated_at=now
        )
    )
    return tag_id


def test_database_refuses_a_tag_link_between_two_users_rows(
    backend: Backend, engine: sa.Engine
) -> None:
    with engine.begin() as conn:
        alice, mallory = _user(conn), _user(conn)
        alice_task = _task(conn, alice)
        mallory_tag = _tag(conn, mallory, "stolen")

    for owner in (alice, mallory):
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(
                sa.insert(TASK_TAGS).values(user_id=owner, task_id=alice_task, tag_id=mallory_tag)
            )


def test_database_refuses_a_second_live_tag_of_the_same_name_ignoring_case(
    engine: sa.Engine,
) -> None:
    with engine.begin() as conn:
        user = _user(conn)
        first = _tag(conn, user, "Work")
    with pytest.raises(IntegrityError), engine.begin() as conn:
        _tag(conn, user, "WORK")

    with engine.begin() as conn:  # a deleted tag frees its name; other users are unaffected
        conn.execute(sa.update(TAGS).where(TAGS.c.id == first).values(deleted_at=utcnow()))
        _tag(conn, user, "WORK")
        _tag(conn, _user(conn), "work")
