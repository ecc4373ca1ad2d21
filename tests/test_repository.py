"""The data layer on its own: every function is scoped by the `user_id` it is given, bad input
is refused before any SQL is sent, and a failed write leaves nothing behind."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from graphql_api.conversations import repository as conversations
from graphql_api.errors import BadUserInput, Conflict, NotFound
from graphql_api.models import TASKS, MessageRole, Priority
from graphql_api.pagination import PageArgs
from graphql_api.tags import repository as tags
from graphql_api.tasks import repository as tasks
from graphql_api.users import repository as users
from tests.helpers import StatementCounter, owner_column, user_tables


@pytest.fixture
def two_users(engine: sa.Engine) -> tuple[str, str]:
    with engine.begin() as conn:
        alice = users.create_user(conn, email="alice@example.com")["id"]
        bob = users.create_user(conn, email="bob@example.com")["id"]
    return alice, bob


def test_reads_only_ever_return_the_given_users_rows(
    engine: sa.Engine, two_users: tuple[str, str]
) -> None:
    alice, bob = two_users
    with engine.begin() as conn:
        task = tasks.create_task(conn, alice, {"title": "Alice's"})
        tag = tags.create_tag(conn, alice, {"name": "private"})

    with engine.connect() as conn:
        assert tasks.get_tasks(conn, bob, [task["id"]]) == {}
        assert tags.get_tags(conn, bob, [tag["id"]]) == {}
        assert (
            tasks.list_tasks(conn, bob, tasks.TaskFilter(), tasks.task_ordering(), PageArgs()).rows
            == []
        )
        assert tasks.count_tasks(conn, bob, tasks.TaskFilter()) == 0
        assert list(tasks.get_tasks(conn, alice, [task["id"]])) == [task["id"]]


def test_writes_to_another_users_rows_are_not_found_and_change_nothing(
    engine: sa.Engine, two_users: tuple[str, str]
) -> None:
    alice, bob = two_users
    with engine.begin() as conn:
        task = tasks.create_task(conn, alice, {"title": "Alice's"})

    for write in (
        lambda conn: tasks.update_task(conn, bob, task["id"], {"title": "pwned"}),
        lambda conn: tasks.delete_task(conn, bob, task["id"]),
        lambda conn: tasks.complete_tasks(conn, bob, [task["id"]], True),
        lambda conn: tasks.delete_tasks(conn, bob, [task["id"]]),
    ):
        with pytest.raises(NotFound), engine.begin() as conn:
            write(conn)

    with engine.connect() as conn:
        assert tasks.get_tasks(conn, alice, [task["id"]])[task["id"]] == tuple(task.values())


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"title": ""}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"title": "ok", "description": "x" * 1001}, "description"),
        ({"title": "ok", "priority": "urgent"}, "priority"),
    ],
)
def test_invalid_task_input_is_refused_before_any_sql(
    engine: sa.Engine, two_users: tuple[str, str], fields: dict[str, object], field: str
) -> None:
    alice, _ = two_users
    with (
        StatementCounter(engine) as counter,
        pytest.raises(BadUserInput) as raised,
        engine.begin() as conn,
    ):
        tasks.create_task(conn, alice, fields)
    assert raised.value.extensions == {"code": "BAD_USER_INPUT", "field": field}
    assert counter.count == 0


def test_limits_are_inclusive(engine: sa.Engine, two_users: tuple[str, str]) -> None:
    alice, _ = two_users
    with engine.begin() as conn:
        task = tasks.create_task(conn, alice, {"title": "x" * 200, "description": "y" * 1000})
        tag = tags.create_tag(conn, alice, {"name": "z" * 50, "color": "#a1b2c3"})
    assert len(task["title"]) == 200
    assert tag["color"] == "#A1B2C3"


def test_a_failed_create_leaves_nothing_half_written(
    engine: sa.Engine, two_users: tuple[str, str]
) -> None:
    alice, bob = two_users
    with engine.begin() as conn:
        bobs_tag = tags.create_tag(conn, bob, {"name": "bob"})
    with pytest.raises(NotFound), engine.begin() as conn:
        tasks.create_task(conn, alice, {"title": "tagged"}, tag_ids=[bobs_tag["id"]])
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(TASKS)).scalar_one() == 0


def test_tag_names_are_unique_per_user_ignoring_case(
    engine: sa.Engine, two_users: tuple[str, str]
) -> None:
    alice, bob = two_users
    with engine.begin() as conn:
        tags.create_tag(conn, alice, {"name": "Work"})
        tags.create_tag(conn, bob, {"name": "work"})
    with pytest.raises(Conflict), engine.begin() as conn:
        tags.create_tag(conn, alice, {"name": " WORK "})


def test_updated_at_moves_on_change_and_timestamps_are_utc(
    engine: sa.Engine, two_users: tuple[str, str]
) -> None:
    alice, _ = two_users
    due = datetime(2030, 1, 1, 12, tzinfo=UTC) + timedelta(hours=5)
    with engine.begin() as conn:
        task = tasks.create_task(conn, alice, {"title": "t", "due_date": due})
    with engine.begin() as conn:
        updated = tasks.update_task(conn, alice, task["id"], {"priority": Priority.HIGH})
    assert updated["updated_at"] > task["updated_at"]
    assert updated["created_at"] == task["created_at"]
    assert updated["due_date"] == due
    assert updated["due_date"].utcoffset() == timedelta(0)


def test_subtask_cycles_are_refused(engine: sa.Engine, two_users: tuple[str, str]) -> None:
    alice, _ = two_users
    with engine.begin() as conn:
        a, b, c = (tasks.create_task(conn, alice, {"title": t})["id"] for t in "abc")
        tasks.add_subtask(conn, alice, a, b)
        tasks.add_subtask(conn, alice, b, c)
    for parent, child in ((c, a), (a, a), (b, a)):
        with pytest.raises(Conflict), engine.begin() as conn:
            tasks.add_subtask(conn, alice, parent, child)


def test_deleting_a_user_removes_everything_they_own(
    engine: sa.Engine, two_users: tuple[str, str]
) -> None:
    alice, bob = two_users
    with engine.begin() as conn:
        tag = tags.create_tag(conn, alice, {"name": "t"})
        parent = tasks.create_task(conn, alice, {"title": "p"}, tag_ids=[tag["id"]])
        tasks.create_task(conn, alice, {"title": "c"}, parent_id=parent["id"])
        chat = conversations.create_conversation(conn, alice, {})
        conversations.post_message(
            conn, alice, chat["id"], {"role": MessageRole.USER, "content": "hi"}
        )
        tasks.create_task(conn, bob, {"title": "bob's"})
    with engine.begin() as conn:
        assert users.delete_user(conn, alice)
    with engine.connect() as conn:
        for table in user_tables():
            owned = owner_column(table) == alice
            count = conn.execute(sa.select(sa.func.count()).where(owned)).scalar_one()
            assert count == 0, table.name
        assert tasks.count_tasks(conn, bob, tasks.TaskFilter()) == 1


def test_unknown_ids_are_simply_absent(engine: sa.Engine, two_users: tuple[str, str]) -> None:
    alice, _ = two_users
    with engine.connect() as conn:
        assert tasks.get_tasks(conn, alice, [uuid.uuid4()]) == {}
        assert tags.tags_of_tasks(conn, alice, [uuid.uuid4()]) == {}


def test_a_batch_of_any_size_is_one_statement_on_postgresql(
    engine: sa.Engine, two_users: tuple[str, str]
) -> None:
    """A loader's keys travel as one array parameter: one prepared statement and plan for
    every batch size. As one placeholder per key, each size was a statement of its own, and
    its generic plan rebuilt the list for every row (a 10,000-key batch ran out of time)."""
    alice, _ = two_users
    with engine.begin() as conn:
        created = [tasks.create_task(conn, alice, {"title": f"t{i}"})["id"] for i in range(3)]
    sizes = (1, 3, 2_000)
    with StatementCounter(engine) as counter, engine.connect() as conn:
        found = [
            tasks.get_tasks(conn, alice, (created + [uuid.uuid4() for _ in range(size)])[:size])
            for size in sizes
        ]
    assert [sorted(rows) for rows in found] == [
        sorted(created[:1]),
        sorted(created),
        sorted(created),
    ]
    distinct = set(counter.statements)
    assert len(distinct) == (1 if engine.dialect.name == "postgresql" else len(sizes))
