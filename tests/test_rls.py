"""Row-level security on PostgreSQL, the second line of defence: even SQL that forgets its
`user_id` filter sees and writes nothing of other users. (SQLite has no row-level security;
there the application's scoping stands alone, as docs/security.md says.)"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import ProgrammingError

from graphql_api.db import Database, Principal, allow_account_lookup, scope_to_user
from graphql_api.models import TASKS, USERS
from graphql_api.tasks import repository as tasks
from graphql_api.users import repository as users
from tests.conftest import POSTGRESQL_ONLY, Backend, make_settings

pytestmark = POSTGRESQL_ONLY


@pytest.fixture
def app_engine(backend: Backend) -> Iterator[sa.Engine]:
    """Connected as the ordinary role the API uses."""
    engine = sa.create_engine(backend.app_url)
    yield engine
    engine.dispose()


@pytest.fixture
def two_users(engine: sa.Engine) -> tuple[str, str]:
    """Alice and Bob with a task each (arranged as the owner)."""
    ids = []
    for name in ("alice", "bob"):
        with engine.begin() as conn:
            allow_account_lookup(conn)
            user_id = users.create_user(conn, email=f"{name}@example.com")["id"]
            scope_to_user(conn, user_id)
            tasks.create_task(conn, user_id, {"title": f"{name}'s task"})
            ids.append(user_id)
    return ids[0], ids[1]


def titles(conn: sa.Connection) -> list[str]:
    return sorted(conn.execute(sa.select(TASKS.c.title)).scalars())  # no user_id filter: on purpose


def test_without_the_setting_a_query_sees_no_rows(app_engine: sa.Engine, two_users: Any) -> None:
    with app_engine.connect() as conn:
        assert titles(conn) == []
        assert conn.execute(sa.select(sa.func.count()).select_from(USERS)).scalar_one() == 0


def test_with_a_user_id_a_query_sees_only_that_users_rows(
    app_engine: sa.Engine, two_users: tuple[str, str]
) -> None:
    _, bob = two_users
    with app_engine.begin() as conn:
        scope_to_user(conn, bob)
        assert titles(conn) == ["bob's task"]
    with app_engine.begin() as conn:  # the setting is transaction-local
        assert titles(conn) == []


def test_rows_for_another_user_cannot_be_written(
    app_engine: sa.Engine, two_users: tuple[str, str]
) -> None:
    alice, bob = two_users
    with app_engine.begin() as conn:
        scope_to_user(conn, alice)
        with pytest.raises(ProgrammingError, match="row-level security"):
            tasks.create_task(conn, bob, {"title": "planted in Bob's list"})
        conn.rollback()
    with app_engine.begin() as conn:  # updates of invisible rows touch nothing
        scope_to_user(conn, alice)
        changed = conn.execute(sa.update(TASKS).values(title="pwned")).rowcount
        assert changed == 1  # Alice's own task only
    with app_engine.begin() as conn:
        scope_to_user(conn, bob)
        assert titles(conn) == ["bob's task"]


async def test_an_unscoped_query_through_the_api_sees_nothing_of_other_users(
    backend: Backend, two_users: tuple[str, str]
) -> None:
    alice, _ = two_users
    database = Database(make_settings(backend.app_url))
    request = database.request(Principal(alice))

    def forgetful_read(conn: sa.Connection, _user_id: str) -> list[str]:
        return titles(conn)  # a bug: ignores the user id it was given

    try:
        assert await request.read(forgetful_read) == ["alice's task"]
    finally:
        await request.close()
        await database.dispose()


def test_account_lookup_opens_only_the_users_table(app_engine: sa.Engine, two_users: Any) -> None:
    with app_engine.begin() as conn:
        allow_account_lookup(conn)
        assert conn.execute(sa.select(sa.func.count()).select_from(USERS)).scalar_one() == 2
        assert titles(conn) == []
