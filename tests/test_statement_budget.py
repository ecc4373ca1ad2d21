"""No N+1, proven: each representative operation sends a fixed number of SQL statements, the
same with 1, 10 or 100 rows at every level. The operations are the benchmark's, kept as
`.graphql` files in bench/operations/.

A relationship field that no operation selects fails `test_every_relationship_is_budgeted`, so
a new relationship gets a budget, and one without a loader then fails its budget.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from graphql import (
    GraphQLObjectType,
    TypeInfo,
    TypeInfoVisitor,
    Visitor,
    get_named_type,
    parse,
    visit,
)

from graphql_api.cli import PROJECT_ROOT
from graphql_api.models import (
    CONVERSATIONS,
    MESSAGES,
    TAGS,
    TASK_RELATIONSHIPS,
    TASK_TAGS,
    TASKS,
    utcnow,
)
from graphql_api.relay import encode_id
from graphql_api.schema import schema
from tests.conftest import THROUGH_POOLER
from tests.helpers import Account, Api, serve

pytestmark = THROUGH_POOLER  # these hold behind Neon's pooler too

OPERATIONS = PROJECT_ROOT / "bench" / "operations"

# Statements per operation. Each request opens with one statement that checks its user exists.
BUDGET = {
    # A page asked for its `totalCount` counts its list in the same statement (a nested first
    # page with a window), so `totalCount` costs nothing more.
    "task_list": 1 + 4,  # counted page, tags of the page, subtasks, tags of the subtasks
    "tags_with_tasks": 1 + 2,  # counted page, tasks of every tag with their counts
    "conversations_with_last_messages": 1 + 2,  # counted page, messages with their counts
    "node_refetch": 1 + 8,  # 4 nodes by type, task tags, subtasks, tag tasks, messages
    "task_stats": 1 + 2,  # grouped counts, counts per tag
    "me_overview": 1 + 8,  # user, 3 pages, parents, tag tasks (counted), messages, their chats
}
SIZES = (1, 10, 100)


@pytest.fixture
def settings(backend: Any) -> Any:
    """100 rows at every level is past the default cost limit: this suite measures SQL only."""
    return backend.settings(max_cost=1_000_000)


def operation(name: str) -> str:
    return (OPERATIONS / f"{name}.graphql").read_text()


def seed_world(engine: sa.Engine, user_id: str, n: int) -> dict[str, str]:
    """n rows at every level: n tags; n tasks, each with n tags and n subtasks (one tag each);
    n conversations of n messages. Returns global ids for the node refetch."""
    now = utcnow()
    own = {"user_id": user_id}
    stamp = {"created_at": now, "updated_at": now, "deleted_at": None}
    tags = [
        {**own, **stamp, "id": uuid.uuid4(), "name": f"tag{i}", "color": "#000000"}
        for i in range(n)
    ]

    def task(title: str, minutes: int) -> dict[str, Any]:
        created = now - timedelta(minutes=minutes)
        return {
            **own,
            "id": uuid.uuid4(),
            "title": title,
            "description": None,
            "completed": False,
            "completed_at": None,
            "priority": "medium",
            "due_date": now,
            "created_at": created,
            "updated_at": created,
            "deleted_at": None,
        }

    parents = [task(f"parent{i}", i) for i in range(n)]  # the newest: first in the list
    children = [task(f"child{i}.{j}", 1000 + i * n + j) for i in range(n) for j in range(n)]
    conversations = [{**own, **stamp, "id": uuid.uuid4(), "title": f"chat{i}"} for i in range(n)]
    messages = [
        {
            **own,
            "id": uuid.uuid4(),
            "conversation_id": c["id"],
            "role": "user",
            "content": f"m{j}",
            "created_at": now - timedelta(seconds=j),
        }
        for c in conversations
        for j in range(n)
    ]
    with engine.begin() as conn:
        conn.execute(sa.insert(TAGS), tags)
        conn.execute(sa.insert(TASKS), parents + children)
        conn.execute(
            sa.insert(TASK_TAGS),
            [{**own, "task_id": p["id"], "tag_id": t["id"]} for p in parents for t in tags]
            + [{**own, "task_id": c["id"], "tag_id": tags[0]["id"]} for c in children],
        )
        conn.execute(
            sa.insert(TASK_RELATIONSHIPS),
            [
                {
                    **own,
                    "parent_task_id": parents[i]["id"],
                    "child_task_id": children[i * n + j]["id"],
                }
                for i in range(n)
                for j in range(n)
            ],
        )
        conn.execute(sa.insert(CONVERSATIONS), conversations)
        conn.execute(sa.insert(MESSAGES), messages)
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE")  # as autovacuum soon would: plans from statistics
    return {
        "task": encode_id("Task", parents[0]["id"]),
        "tag": encode_id("Tag", tags[0]["id"]),
        "conversation": encode_id("Conversation", conversations[0]["id"]),
        "message": encode_id("Message", messages[0]["id"]),
    }


def variables(name: str, n: int, ids: dict[str, str]) -> dict[str, Any]:
    return {
        "task_list": {"first": n},
        "tags_with_tasks": {"first": n, "tasksFirst": n},
        "conversations_with_last_messages": {"first": n, "last": n},
        "node_refetch": ids,
        "task_stats": {},
        "me_overview": {"first": n},
    }[name]


def user_row_id(account: Account) -> str:
    from graphql_api.relay import decode_id

    return decode_id(account.id)[1]


@pytest.mark.parametrize("n", SIZES)
async def test_statements_per_operation_do_not_depend_on_row_counts(
    api: Api, engine: sa.Engine, n: int
) -> None:
    account = await api.sign_up()
    ids = seed_world(engine, user_row_id(account), n)
    for name, budget in BUDGET.items():
        with api.count_statements() as counter:
            response = await api.execute(operation(name), variables(name, n, ids), as_user=account)
        data = response.ok()
        assert counter.count == budget, (name, n, counter.statements)
        if name == "task_list":  # the data really has n rows at each level
            first = data["tasks"]["edges"][0]["node"]
            assert len(data["tasks"]["edges"]) == n
            assert len(first["tags"]) == len(first["subtasks"]) == n


async def test_without_loaders_the_same_operation_costs_a_statement_per_row(
    backend: Any, engine: sa.Engine
) -> None:
    """The naive path (benchmark only) shows what the loaders buy: N+1 grows with rows."""

    async with serve(backend.settings(use_dataloaders=False)) as naive:
        account = await naive.sign_up()
        seed_world(engine, user_row_id(account), 10)
        with naive.count_statements() as counter:
            (await naive.execute(operation("task_list"), {"first": 10}, as_user=account)).ok()
    assert counter.count == 1 + 1 + 10 + 10 + 100  # counted page, tags and subtasks per task, ...


def selected_fields(document: str) -> set[str]:
    """`Type.field` for every field an operation selects."""
    type_info = TypeInfo(schema._schema)
    seen: set[str] = set()

    class Collect(Visitor):
        def enter_field(self, node: Any, *_: Any) -> None:
            parent = type_info.get_parent_type()
            if parent is not None:
                seen.add(f"{parent.name}.{node.name.value}")

    visit(parse(document), TypeInfoVisitor(type_info, Collect()))
    return seen


def relationship_fields() -> set[str]:
    """Fields of entity (Node) types that lead to other objects: each must be loader-backed."""
    fields = set()
    for type_name, named in schema._schema.type_map.items():
        if not isinstance(named, GraphQLObjectType):
            continue
        if "Node" not in {interface.name for interface in named.interfaces}:
            continue
        for field_name, field in named.fields.items():
            if isinstance(get_named_type(field.type), GraphQLObjectType):
                fields.add(f"{type_name}.{field_name}")
    return fields


def test_every_relationship_is_budgeted() -> None:
    selected = set().union(*(selected_fields(operation(name)) for name in BUDGET))
    missing = relationship_fields() - selected
    assert not missing, f"select these in a bench/operations file with a budget: {sorted(missing)}"
    assert {path.stem for path in Path(OPERATIONS).glob("*.graphql")} == set(BUDGET)


TRASH = """
query Trash($n: Int) {
  tasks(first: $n, filter: {deleted: true}) { totalCount nodes { id tags { id } subtasks { id } } }
  tags(first: $n, filter: {deleted: true}) {
    totalCount nodes { id tasks(first: $n) { totalCount nodes { id } } }
  }
  conversations(first: $n, filter: {deleted: true}) {
    totalCount nodes { id messages(last: $n) { totalCount nodes { id } } }
  }
}"""


@pytest.mark.parametrize("n", SIZES)
async def test_the_trash_lists_cost_one_statement_per_level(
    api: Api, engine: sa.Engine, n: int
) -> None:
    """`filter: {deleted: true}` lists page and batch like the live lists: the user check, then
    the counted page and one statement per relationship (a nested page counts its own list),
    for each list."""
    account = await api.sign_up()
    user_id = user_row_id(account)
    seed_world(engine, user_id, n)
    with engine.begin() as conn:  # the tags, the conversations and the parent tasks go
        for table in (TAGS, CONVERSATIONS):
            conn.execute(
                sa.update(table).where(table.c.user_id == user_id).values(deleted_at=utcnow())
            )
        conn.execute(
            sa.update(TASKS)
            .where(TASKS.c.user_id == user_id, TASKS.c.title.startswith("parent"))
            .values(deleted_at=utcnow())
        )
    with api.count_statements() as counter:
        data = (await api.execute(TRASH, {"n": n}, as_user=account)).ok()
    assert counter.count == 1 + 3 + 2 + 2, (n, counter.statements)
    for field in ("tasks", "tags", "conversations"):
        assert data[field]["totalCount"] == len(data[field]["nodes"]) == n
    assert len(data["tasks"]["nodes"][0]["subtasks"]) == n  # live subtasks of a trashed task
    assert len(data["conversations"]["nodes"][0]["messages"]["nodes"]) == n


async def test_relationships_resolve_once_per_level_on_the_compiled_path(
    api: Api, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every asynchronous field of the benchmark's operations that can have many parents is
    resolved by its batch form (`graphql_api.compiled.batch`): no resolver call per parent object."""
    from graphql_api.compiled.run import Run

    per_object: set[str] = set()
    call_each = Run._call_each

    def record(run: Run, field: Any, objects: Any, children: Any) -> None:
        if field.is_async:
            per_object.add(f"{field.parent_type.name}.{field.name}")
        call_each(run, field, objects, children)

    monkeypatch.setattr(Run, "_call_each", record)
    account = await api.sign_up()
    ids = seed_world(engine, user_row_id(account), 3)
    for name in BUDGET:
        (await api.execute(operation(name), variables(name, 3, ids), as_user=account)).ok()
    once = ("Query.", "User.", "TaskStats.")  # one object per request: nothing to batch
    assert {field for field in per_object if not field.startswith(once)} == set()
