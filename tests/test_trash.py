"""The trash, over HTTP: restoring tags and conversations, listing the trash, emptying it, bulk
deletion of tasks (all or nothing, naming the refused id), and the operators' purge."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from graphql_api import cli
from graphql_api.changes.record import recording
from graphql_api.db import scope_to_user
from graphql_api.models import (
    CONVERSATIONS,
    MESSAGES,
    TAGS,
    TASK_RELATIONSHIPS,
    TASK_TAGS,
    TASKS,
    utcnow,
)
from graphql_api.purge import PurgeResult, purge_trash
from graphql_api.relay import decode_id, encode_id
from graphql_api.tasks.repository import restore_task
from tests.conftest import POSTGRESQL_ONLY, Backend, make_settings
from tests.helpers import Account, Api

MISSING_TASK = encode_id("Task", "00000000-0000-0000-0000-000000000000")


class Client:
    """One user's view of the API, with the operations these tests repeat."""

    def __init__(self, api: Api, account: Account) -> None:
        self.api = api
        self.account = account

    async def run(self, query: str, **variables: Any) -> Any:
        return (await self.api.execute(query, variables, as_user=self.account)).ok()

    async def attempt(self, query: str, **variables: Any) -> Any:
        return await self.api.execute(query, variables, as_user=self.account)

    async def tag(self, name: str) -> str:
        data = await self.run(
            "mutation($n: String!) { createTag(input: {name: $n}) { id } }", n=name
        )
        return str(data["createTag"]["id"])

    async def task(self, title: str, tags: Sequence[str] = (), parent: str | None = None) -> str:
        data = await self.run(
            "mutation($t: String!, $g: [ID!]!, $p: ID) "
            "{ createTask(input: {title: $t, tagIds: $g, parentId: $p}) { id } }",
            t=title,
            g=list(tags),
            p=parent,
        )
        return str(data["createTask"]["id"])

    async def conversation(self, title: str, messages: int = 0) -> str:
        data = await self.run(
            "mutation($t: String!) { createConversation(input: {title: $t}) { id } }", t=title
        )
        conversation_id = str(data["createConversation"]["id"])
        for n in range(messages):
            await self.run(
                "mutation($c: ID!, $m: String!) "
                "{ postMessage(conversationId: $c, input: {role: USER, content: $m}) { id } }",
                c=conversation_id,
                m=f"{title} message {n}",
            )
        return conversation_id

    async def delete(self, kind: str, global_id: str) -> Any:
        field = f"delete{kind}"
        data = await self.run(
            f"mutation($id: ID!) {{ {field}(id: $id) {{ id deletedAt }} }}", id=global_id
        )
        return data[field]

    async def restore(self, kind: str, global_id: str) -> Any:
        return await self.attempt(
            f"mutation($id: ID!) {{ restore{kind}(id: $id) {{ id deletedAt }} }}", id=global_id
        )

    async def listed(self, field: str, *, deleted: bool) -> tuple[int, list[str]]:
        data = await self.run(
            f"query($d: Boolean!) {{ {field}(filter: {{deleted: $d}}) {{ totalCount nodes {{ id }} }} }}",
            d=deleted,
        )
        return data[field]["totalCount"], [node["id"] for node in data[field]["nodes"]]

    async def empty_trash(self) -> int:
        count: int = (await self.run("mutation { emptyTrash }"))["emptyTrash"]
        return count


@pytest.fixture
async def alice(api: Api) -> Client:
    return Client(api, await api.sign_up())


@pytest.fixture
async def bob(api: Api) -> Client:
    return Client(api, await api.sign_up())


def row_id(global_id: str) -> str:
    return decode_id(global_id)[1]


TASK_TAGS_QUERY = "query($id: ID!) { task(id: $id) { tags { id name } } }"


# --- tags and conversations: trash, lists, restore ---------------------------------------------


async def test_a_trashed_tag_is_listed_readable_and_restored_onto_its_tasks(alice: Client) -> None:
    work = await alice.tag("work")
    home = await alice.tag("home")
    task = await alice.task("t", tags=[work, home])
    trashed = await alice.delete("Tag", work)
    assert trashed["deletedAt"] is not None

    assert await alice.listed("tags", deleted=False) == (1, [home])
    assert await alice.listed("tags", deleted=True) == (1, [work])
    assert (await alice.run(TASK_TAGS_QUERY, id=task))["task"]["tags"] == [
        {"id": home, "name": "home"}
    ]
    # Readable by id while in the trash, like a trashed task: a client can show and restore it.
    read = await alice.run(
        "query($id: ID!) { tag(id: $id) { name deletedAt } node(id: $id) { id } }", id=work
    )
    assert read["tag"]["name"] == "work"
    assert read["tag"]["deletedAt"] is not None
    assert read["node"] == {"id": work}
    searched = await alice.run('{ tags(search: "WO", filter: {deleted: true}) { totalCount } }')
    assert searched["tags"]["totalCount"] == 1

    # Changing or using it needs a restore first (CONFLICT), as for a trashed task.
    renamed = await alice.attempt(
        'mutation($id: ID!) { updateTag(id: $id, input: {name: "job"}) { id } }', id=work
    )
    assert renamed.codes == ["CONFLICT"]
    attached = await alice.attempt(
        "mutation($t: ID!, $g: ID!) { addTagToTask(taskId: $t, tagId: $g) { id } }",
        t=task,
        g=work,
    )
    assert attached.codes == ["CONFLICT"]
    assert (await alice.delete("Tag", work))["deletedAt"] == trashed["deletedAt"]  # idempotent

    restored = await alice.restore("Tag", work)
    assert restored.ok()["restoreTag"] == {"id": work, "deletedAt": None}
    assert (await alice.restore("Tag", work)).ok()["restoreTag"]["deletedAt"] is None
    assert await alice.listed("tags", deleted=True) == (0, [])
    assert (await alice.listed("tags", deleted=False))[0] == 2
    assert (await alice.run(TASK_TAGS_QUERY, id=task))["task"]["tags"] == [
        {"id": home, "name": "home"},
        {"id": work, "name": "work"},
    ]


async def test_restoring_a_tag_whose_name_was_taken_meanwhile_conflicts(alice: Client) -> None:
    old = await alice.tag("Errands")
    await alice.delete("Tag", old)
    new = await alice.tag("errands")  # a trashed tag frees its name
    refused = await alice.restore("Tag", old)
    assert refused.codes == ["CONFLICT"]
    assert refused.errors[0]["extensions"]["field"] == "name"
    assert await alice.listed("tags", deleted=True) == (1, [old])
    await alice.run(
        'mutation($id: ID!) { updateTag(id: $id, input: {name: "chores"}) { id } }', id=new
    )
    assert (await alice.restore("Tag", old)).ok()["restoreTag"]["deletedAt"] is None


async def test_a_trashed_conversation_keeps_its_messages_and_comes_back(alice: Client) -> None:
    chat = await alice.conversation("chat", messages=2)
    other = await alice.conversation("other")
    await alice.delete("Conversation", chat)
    assert await alice.listed("conversations", deleted=False) == (1, [other])
    assert await alice.listed("conversations", deleted=True) == (1, [chat])

    read = await alice.run(
        "query($id: ID!) { conversation(id: $id) { deletedAt messages { nodes { id content } } } }",
        id=chat,
    )
    messages = read["conversation"]["messages"]["nodes"]
    assert [m["content"] for m in messages] == ["chat message 0", "chat message 1"]
    refetched = await alice.run(
        "query($id: ID!) { node(id: $id) { ... on Message { conversation { id deletedAt } } } }",
        id=messages[0]["id"],
    )
    assert refetched["node"]["conversation"]["id"] == chat

    posted = await alice.attempt(
        'mutation($c: ID!) { postMessage(conversationId: $c, input: {role: USER, content: "x"}) { id } }',
        c=chat,
    )
    assert posted.codes == ["CONFLICT"]
    renamed = await alice.attempt(
        'mutation($id: ID!) { updateConversation(id: $id, input: {title: "x"}) { id } }', id=chat
    )
    assert renamed.codes == ["CONFLICT"]

    assert (await alice.restore("Conversation", chat)).ok()["restoreConversation"] == {
        "id": chat,
        "deletedAt": None,
    }
    assert await alice.listed("conversations", deleted=True) == (0, [])
    listed = await alice.run("{ conversations { nodes { id messages { totalCount } } } }")
    assert {n["id"]: n["messages"]["totalCount"] for n in listed["conversations"]["nodes"]} == {
        chat: 2,
        other: 0,
    }


async def test_restoring_what_is_not_yours_is_not_found(alice: Client, bob: Client) -> None:
    tag = await bob.tag("bob's")
    chat = await bob.conversation("bob's")
    await bob.delete("Tag", tag)
    await bob.delete("Conversation", chat)
    for kind, global_id in (("Tag", tag), ("Conversation", chat)):
        assert (await alice.restore(kind, global_id)).codes == ["NOT_FOUND"]
        looked_up = await alice.attempt("query($id: ID!) { node(id: $id) { id } }", id=global_id)
        assert looked_up.data["node"] is None
    assert await alice.listed("tags", deleted=True) == (0, [])
    assert await alice.listed("conversations", deleted=True) == (0, [])
    assert await bob.listed("tags", deleted=True) == (1, [tag])
    assert await bob.listed("conversations", deleted=True) == (1, [chat])


# --- emptyTrash ------------------------------------------------------------------------------


def _rows(engine: sa.Engine, table: sa.Table, **where: Any) -> int:
    with engine.connect() as conn:
        query = sa.select(sa.func.count()).select_from(table)
        for column, value in where.items():
            query = query.where(table.c[column] == value)
        count: int = conn.execute(query).scalar_one()
        return count


async def _trash_world(client: Client) -> dict[str, str]:
    """Live and trashed rows of every kind, linked across the two."""
    live_tag = await client.tag("live")
    trashed_tag = await client.tag("trashed")
    parent = await client.task("live parent", tags=[live_tag, trashed_tag])
    trashed_child = await client.task("trashed child", tags=[live_tag], parent=parent)
    trashed_parent = await client.task("trashed parent")
    live_child = await client.task("live child", parent=trashed_parent)
    live_chat = await client.conversation("live", messages=1)
    trashed_chat = await client.conversation("trashed", messages=2)
    for kind, global_id in (
        ("Tag", trashed_tag),
        ("Task", trashed_child),
        ("Task", trashed_parent),
        ("Conversation", trashed_chat),
    ):
        await client.delete(kind, global_id)
    return {
        "live_tag": live_tag,
        "trashed_tag": trashed_tag,
        "parent": parent,
        "trashed_child": trashed_child,
        "trashed_parent": trashed_parent,
        "live_child": live_child,
        "live_chat": live_chat,
        "trashed_chat": trashed_chat,
    }


async def test_empty_trash_removes_the_callers_trash_and_what_it_leaves_behind(
    alice: Client, bob: Client, engine: sa.Engine
) -> None:
    mine = await _trash_world(alice)
    theirs = await _trash_world(bob)
    bob_before = {
        field: await bob.listed(field, deleted=True) for field in ("tasks", "tags", "conversations")
    }

    assert await alice.empty_trash() == 4  # 2 tasks, 1 tag, 1 conversation
    for field in ("tasks", "tags", "conversations"):
        assert await alice.listed(field, deleted=True) == (0, [])
    for key in ("trashed_tag", "trashed_child", "trashed_parent", "trashed_chat"):
        assert (await alice.run("query($id: ID!) { node(id: $id) { id } }", id=mine[key]))[
            "node"
        ] is None
    # Live rows stay, with their live links.
    assert await alice.listed("tasks", deleted=False) == (
        2,
        [mine["live_child"], mine["parent"]],
    )
    parent = await alice.run(
        "query($id: ID!) { task(id: $id) { tags { id } subtasks { id } } }", id=mine["parent"]
    )
    assert parent["task"] == {"tags": [{"id": mine["live_tag"]}], "subtasks": []}
    child = await alice.run(
        "query($id: ID!) { task(id: $id) { parents { id } } }", id=mine["live_child"]
    )
    assert child["task"]["parents"] == []
    assert await alice.listed("conversations", deleted=False) == (1, [mine["live_chat"]])

    # Nothing the trash left behind remains: tag links, subtask links, messages.
    owner = row_id(alice.account.id)
    assert _rows(engine, TASK_TAGS, user_id=owner) == 1  # the live parent's live tag
    assert _rows(engine, TASK_RELATIONSHIPS, user_id=owner) == 0
    assert _rows(engine, MESSAGES, user_id=owner) == 1
    for table in (TASKS, TAGS, CONVERSATIONS):
        with engine.connect() as conn:
            trashed = conn.execute(
                sa.select(sa.func.count())
                .select_from(table)
                .where(table.c.user_id == owner, table.c.deleted_at.is_not(None))
            ).scalar_one()
        assert trashed == 0

    # Another user's trash is untouched.
    for field, before in bob_before.items():
        assert await bob.listed(field, deleted=True) == before
    assert (await bob.restore("Tag", theirs["trashed_tag"])).ok()["restoreTag"]["deletedAt"] is None
    assert _rows(engine, MESSAGES, user_id=row_id(bob.account.id)) == 3

    assert await alice.empty_trash() == 0


# --- deleteTasks and completeTasks: all or nothing, naming the refused id ----------------------

DELETE_TASKS = "mutation($ids: [ID!]!) { deleteTasks(ids: $ids) { id deletedAt } }"
COMPLETE_TASKS = "mutation($ids: [ID!]!) { completeTasks(ids: $ids) { id completed } }"


async def test_delete_tasks_trashes_all_of_them_in_the_order_given(alice: Client) -> None:
    a, b, c = [await alice.task(title) for title in "abc"]
    earlier = await alice.delete("Task", c)
    deleted = (await alice.run(DELETE_TASKS, ids=[c, a, a]))["deleteTasks"]
    assert [task["id"] for task in deleted] == [c, a, a]
    assert deleted[0]["deletedAt"] == earlier["deletedAt"]  # already in the trash: unchanged
    assert deleted[1]["deletedAt"] is not None
    assert await alice.listed("tasks", deleted=False) == (1, [b])
    assert (await alice.listed("tasks", deleted=True))[0] == 2
    assert (await alice.run(DELETE_TASKS, ids=[]))["deleteTasks"] == []


@pytest.mark.parametrize("mutation", [DELETE_TASKS, COMPLETE_TASKS])
async def test_bulk_task_mutations_refuse_all_naming_the_id_sent(
    alice: Client, bob: Client, mutation: str
) -> None:
    mine = [await alice.task("one"), await alice.task("two")]
    foreign = await bob.task("bob's")
    answers = {}
    for name, bad in (("foreign", foreign), ("missing", MISSING_TASK), ("garbage", "not-an-id")):
        response = await alice.attempt(mutation, ids=[mine[0], bad, mine[1]])
        assert response.codes == ["NOT_FOUND"], response.body
        error = response.errors[0]
        assert bad in error["message"]
        assert error["extensions"]["id"] == bad
        # Nothing of the caller's tasks changed.
        assert await alice.listed("tasks", deleted=False) == (2, mine[::-1])
        done = await alice.run("{ tasks(filter: {completed: true}) { totalCount } }")
        assert done["tasks"]["totalCount"] == 0
        answers[name] = (error["message"].replace(bad, "ID"), response.data)
    # Another user's id and one that does not exist answer alike.
    assert answers["foreign"] == answers["missing"] == answers["garbage"]
    assert await bob.listed("tasks", deleted=False) == (1, [foreign])


async def test_complete_tasks_refuses_a_trashed_task_naming_it(alice: Client) -> None:
    live, trashed = await alice.task("live"), await alice.task("trashed")
    await alice.delete("Task", trashed)
    refused = await alice.attempt(COMPLETE_TASKS, ids=[live, trashed])
    assert refused.codes == ["CONFLICT"]
    assert trashed in refused.errors[0]["message"]
    assert refused.errors[0]["extensions"]["id"] == trashed
    done = await alice.run("{ tasks(filter: {completed: true}) { totalCount } }")
    assert done["tasks"]["totalCount"] == 0


# --- graphql-api purge --older-than DAYS ------------------------------------------------------


def _age(engine: sa.Engine, table: sa.Table, global_id: str, days: float) -> None:
    """Pretend the row went to the trash `days` ago."""
    with engine.begin() as conn:
        conn.execute(
            sa.update(table)
            .where(table.c.id == uuid.UUID(row_id(global_id)))
            .values(deleted_at=utcnow() - timedelta(days=days))
        )


def _exists(engine: sa.Engine, table: sa.Table, global_id: str) -> bool:
    with engine.connect() as conn:
        query = sa.select(table.c.id).where(table.c.id == uuid.UUID(row_id(global_id)))
        return conn.execute(query).first() is not None


async def _aged_trash(client: Client, engine: sa.Engine) -> dict[str, str]:
    """A trash world whose trashed rows went 40 days ago, plus fresh trash of every kind."""
    world = await _trash_world(client)
    for key, table in (
        ("trashed_tag", TAGS),
        ("trashed_child", TASKS),
        ("trashed_parent", TASKS),
        ("trashed_chat", CONVERSATIONS),
    ):
        _age(engine, table, world[key], days=40)
    fresh_tag = await client.tag("fresh")
    fresh_task = await client.task("fresh", tags=[fresh_tag, world["live_tag"]])
    fresh_chat = await client.conversation("fresh", messages=1)
    for kind, global_id in (("Tag", fresh_tag), ("Task", fresh_task), ("Conversation", fresh_chat)):
        await client.delete(kind, global_id)
    return {**world, "fresh_tag": fresh_tag, "fresh_task": fresh_task, "fresh_chat": fresh_chat}


def _check_purged(engine: sa.Engine, client: Client, world: dict[str, str]) -> None:
    owner = row_id(client.account.id)
    gone = {
        "trashed_tag": TAGS,
        "trashed_child": TASKS,
        "trashed_parent": TASKS,
        "trashed_chat": CONVERSATIONS,
    }
    kept = {
        "live_tag": TAGS,
        "parent": TASKS,
        "live_child": TASKS,
        "live_chat": CONVERSATIONS,
        "fresh_tag": TAGS,
        "fresh_task": TASKS,
        "fresh_chat": CONVERSATIONS,
    }
    assert not [key for key, table in gone.items() if _exists(engine, table, world[key])]
    assert all(_exists(engine, table, world[key]) for key, table in kept.items())
    # Orphans went with the purged rows; the links and messages of everything kept stayed:
    # parent-live_tag, fresh_task-fresh_tag, fresh_task-live_tag; the live and the fresh
    # conversation's messages.
    assert _rows(engine, TASK_TAGS, user_id=owner) == 3
    assert _rows(engine, TASK_RELATIONSHIPS, user_id=owner) == 0
    assert _rows(engine, MESSAGES, user_id=owner) == 2


async def test_purge_removes_old_trash_of_every_user_and_its_orphans(
    alice: Client, bob: Client, engine: sa.Engine, backend: Backend
) -> None:
    worlds = {"alice": await _aged_trash(alice, engine), "bob": await _aged_trash(bob, engine)}
    assert _rows(engine, TASK_RELATIONSHIPS) == 4  # before: each world's two subtask links

    result = purge_trash(make_settings(backend.url), older_than=timedelta(days=30))
    assert (result.users, result.counts.tasks, result.counts.tags, result.counts.conversations) == (
        2,
        4,
        2,
        2,
    )
    _check_purged(engine, alice, worlds["alice"])
    _check_purged(engine, bob, worlds["bob"])
    # What is left is whole over the API: fresh trash still restorable, live rows listed.
    assert await alice.listed("tags", deleted=True) == (1, [worlds["alice"]["fresh_tag"]])
    assert (await alice.restore("Conversation", worlds["alice"]["fresh_chat"])).ok()
    assert (await bob.listed("tasks", deleted=False))[0] == 2

    again = purge_trash(make_settings(backend.url), older_than=timedelta(days=30))
    assert again.counts.total == 0
    assert again.users == 0


async def test_purge_runs_from_the_command_line(
    alice: Client,
    engine: sa.Engine,
    backend: Backend,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    world = await _aged_trash(alice, engine)
    monkeypatch.setattr(cli, "get_settings", lambda: make_settings(backend.url))
    cli.main(["purge", "--older-than", "30"])
    printed = capsys.readouterr().out
    assert "tasks: 2\n  tags: 1\n  conversations: 1\n  users: 1\n" in printed
    _check_purged(engine, alice, world)

    cli.main(["purge", "--older-than", "0"])  # everything in the trash, however recent
    assert "tasks: 1\n  tags: 1\n  conversations: 1\n" in capsys.readouterr().out
    for field in ("tasks", "tags", "conversations"):
        assert (await alice.listed(field, deleted=True))[0] == 0
    with pytest.raises(SystemExit):
        cli.main(["purge", "--older-than", "-1"])


@POSTGRESQL_ONLY  # row-level security is PostgreSQL's
async def test_purge_works_under_row_level_security(
    alice: Client, bob: Client, engine: sa.Engine, backend: Backend
) -> None:
    """As a role that row-level security binds (the tables' owner is bound by FORCE, like the
    API's role), the purge still reaches every user: it binds each transaction to one user."""
    worlds = {"alice": await _aged_trash(alice, engine), "bob": await _aged_trash(bob, engine)}
    result = purge_trash(make_settings(backend.app_url), older_than=timedelta(days=30), batch=1)
    assert (result.users, result.counts.total) == (2, 8)
    _check_purged(engine, alice, worlds["alice"])
    _check_purged(engine, bob, worlds["bob"])


def _blocked_on_a_lock(engine: sa.Engine, timeout: float = 30) -> None:
    """Wait until another session of the test database waits for a lock."""
    waiting = sa.text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
    )
    deadline = time.monotonic() + timeout
    with engine.connect() as conn:
        while not conn.execute(waiting).scalar_one():
            assert time.monotonic() < deadline, "the purge never waited for the writer"
            time.sleep(0.05)


@POSTGRESQL_ONLY  # row locks (SQLite's writers take one lock for the whole database)
async def test_the_purge_and_a_concurrent_writer_do_not_deadlock(
    alice: Client, engine: sa.Engine, backend: Backend
) -> None:
    """A write locks the rows it changes, then its user's row when it records its changes
    (last, just before COMMIT). The purge takes them in the same order: a user's trash first,
    then the user's row (its retention cut and its own feed rows), so it waits for a writer
    holding a trashed row instead of deadlocking with it. Both finish; the feed has the
    writer's change and the purge's deletion, and the retention kept both."""
    kept, purged = await alice.task("restored meanwhile"), await alice.task("purged")
    for task in (kept, purged):
        await alice.delete("Task", task)
    user = row_id(alice.account.id)
    settings = make_settings(backend.url, changes_retention_days=0)  # every change so far goes

    # The writer, as a restoreTask runs: a write transaction that records its changes.
    with engine.connect() as conn, conn.begin(), recording(conn):
        scope_to_user(conn, user)
        restore_task(conn, user, uuid.UUID(row_id(kept)))  # holds the trashed row's lock
        purge: asyncio.Future[PurgeResult] = asyncio.ensure_future(
            asyncio.to_thread(purge_trash, settings, older_than=timedelta(0))
        )
        await asyncio.to_thread(_blocked_on_a_lock, engine)
    # The writer recorded its change under the user's row lock and committed.
    result = await purge  # no deadlock: PostgreSQL would have aborted one of the two

    assert (result.counts.tasks, result.changes) == (1, 4)  # 2 created, 2 trashed before
    data = await alice.run("{ changes { changes { kind id } } }")
    assert data["changes"]["changes"] == [
        {"kind": "RESTORED", "id": kept},
        {"kind": "DELETED", "id": purged},
    ]
    assert await alice.listed("tasks", deleted=False) == (1, [kept])
