"""The change feed (`Query.changes`), over HTTP: every mutation's entries, order, pages,
retention, scoping, rollbacks; on PostgreSQL also concurrent writers and NOTIFY.

Completeness is checked two ways. Every Mutation field of the live schema must have a scenario
here (a new mutation without one fails `test_every_mutation_has_a_feed_scenario`). And each
scenario compares the feed with what the mutation did to the database: the objects whose rows
or links differ before and after must be exactly the objects the feed names, so a write path
that forgets to record its change fails its scenario.
"""

from __future__ import annotations

import asyncio
import select
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import psycopg2
import pytest
import sqlalchemy as sa
from graphql import GraphQLObjectType

from graphql_api.changes import cursor
from graphql_api.changes.record import recording
from graphql_api.db import scope_to_user
from graphql_api.models import (
    CHANGES,
    CONVERSATIONS,
    MESSAGES,
    TAGS,
    TASK_RELATIONSHIPS,
    TASK_TAGS,
    TASKS,
    USERS,
    utcnow,
)
from graphql_api.purge import purge_trash
from graphql_api.relay import decode_id, encode_id
from graphql_api.schema import schema
from graphql_api.tasks import repository as tasks
from tests.conftest import POSTGRESQL_ONLY, Backend, make_settings
from tests.helpers import Account, Api, serve

PAGE = """
query Feed($since: String, $first: Int) {
  changes(since: $since, first: $first) {
    cursor
    hasMore
    changes {
      cursor
      kind
      id
      node {
        id
        ... on Task { title deletedAt }
        ... on Tag { deletedAt }
        ... on Conversation { deletedAt }
        ... on Message { content }
      }
    }
  }
}
"""

LIVE, TRASHED, GONE = "live", "trashed", "gone"  # what a change's `node` shows


@dataclass(frozen=True)
class Entry:
    kind: str
    id: str
    node: str  # LIVE, TRASHED or GONE

    @classmethod
    def of(cls, change: dict[str, Any]) -> Entry:
        node = change["node"]
        if node is None:
            shown = GONE
        else:
            assert node["id"] == change["id"]
            shown = TRASHED if node.get("deletedAt") else LIVE
        return cls(change["kind"], change["id"], shown)


class Client:
    """One user's view of the API, with the operations these tests repeat."""

    def __init__(self, api: Api, account: Account) -> None:
        self.api = api
        self.account = account

    @property
    def user_id(self) -> str:
        return decode_id(self.account.id)[1]

    async def run(self, query: str, **variables: Any) -> Any:
        return (await self.api.execute(query, variables, as_user=self.account)).ok()

    async def attempt(self, query: str, **variables: Any) -> Any:
        return await self.api.execute(query, variables, as_user=self.account)

    async def page(self, since: str | None = None, first: int | None = None) -> dict[str, Any]:
        variables: dict[str, Any] = {"since": since}
        if first is not None:
            variables["first"] = first
        data = await self.run(PAGE, **variables)
        page: dict[str, Any] = data["changes"]
        return page

    async def feed(self, since: str | None = None) -> tuple[list[dict[str, Any]], str]:
        """Every change after `since`, page by page; and the cursor to continue from."""
        changes: list[dict[str, Any]] = []
        while True:
            page = await self.page(since, 7)  # small pages: paging is exercised everywhere
            changes += page["changes"]
            since = page["cursor"]
            if not page["hasMore"]:
                return changes, page["cursor"]

    async def cursor(self) -> str:
        return (await self.feed())[1]

    async def tag(self, name: str) -> str:
        data = await self.run(
            "mutation($n: String!) { createTag(input: {name: $n}) { id } }", n=name
        )
        return str(data["createTag"]["id"])

    async def task(
        self, title: str, tags: list[str] | None = None, parent: str | None = None
    ) -> str:
        data = await self.run(
            "mutation($t: String!, $g: [ID!]!, $p: ID) "
            "{ createTask(input: {title: $t, tagIds: $g, parentId: $p}) { id } }",
            t=title,
            g=tags or [],
            p=parent,
        )
        return str(data["createTask"]["id"])

    async def conversation(self, title: str = "chat") -> str:
        data = await self.run(
            "mutation($t: String!) { createConversation(input: {title: $t}) { id } }", t=title
        )
        return str(data["createConversation"]["id"])

    async def post(self, conversation: str, content: str = "hello") -> str:
        data = await self.run(
            "mutation($c: ID!, $m: String!) "
            "{ postMessage(conversationId: $c, input: {role: USER, content: $m}) { id } }",
            c=conversation,
            m=content,
        )
        return str(data["postMessage"]["id"])

    async def mutate(
        self, field_name: str, arguments: str = "", selection: str = "", **variables: Any
    ) -> Any:
        """Run one mutation field; `arguments` like `(id: $id)`, variables typed by prefix:
        `ids` lists of IDs, names ending in `id` IDs, everything else as given."""
        declared = ", ".join(
            f"${name}: {_type_of(name, value)}" for name, value in variables.items()
        )
        head = f"mutation({declared})" if declared else "mutation"
        return (await self.run(f"{head} {{ {field_name}{arguments} {selection} }}", **variables))[
            field_name
        ]


def _type_of(name: str, value: Any) -> str:
    if isinstance(value, list):
        return "[ID!]!"
    if isinstance(value, bool):
        return "Boolean!"
    if name.lower().endswith("id"):
        return "ID!"
    return "String!"


# --- what a mutation did to the database -----------------------------------------------------


Objects = dict[str, tuple[tuple[Any, ...], tuple[frozenset[Any], ...]]]


def objects(engine: sa.Engine, user_id: str) -> Objects:
    """Every task, tag, conversation and message of the user by global ID: its row, and for a
    task its links (tag ids, subtask ids, parent ids)."""
    with engine.connect() as conn:
        links: dict[str, dict[Any, set[Any]]] = defaultdict(lambda: defaultdict(set))
        for row in conn.execute(sa.select(TASK_TAGS).where(TASK_TAGS.c.user_id == user_id)):
            links["tags"][row.task_id].add(row.tag_id)
        relationships = sa.select(TASK_RELATIONSHIPS).where(TASK_RELATIONSHIPS.c.user_id == user_id)
        for row in conn.execute(relationships):
            links["subtasks"][row.parent_task_id].add(row.child_task_id)
            links["parents"][row.child_task_id].add(row.parent_task_id)
        found: Objects = {}
        for type_name, table in (
            ("Task", TASKS),
            ("Tag", TAGS),
            ("Conversation", CONVERSATIONS),
            ("Message", MESSAGES),
        ):
            for row in conn.execute(sa.select(table).where(table.c.user_id == user_id)):
                task_links = tuple(
                    frozenset(links[name][row.id]) for name in ("tags", "subtasks", "parents")
                )
                found[encode_id(type_name, row.id)] = (
                    tuple(row),
                    task_links if type_name == "Task" else (),
                )
    return found


def changed_objects(before: Objects, after: Objects) -> set[str]:
    """The objects created, deleted, or whose row or links changed. A link that went because
    the object at its other end was deleted for good changes nothing on this end (the lists
    show live objects only, and that object's own DELETED says it)."""
    kept = {uuid.UUID(decode_id(global_id)[1]) for global_id in after}

    def seen(entry: tuple[tuple[Any, ...], tuple[frozenset[Any], ...]]) -> Any:
        row, links = entry
        return row, tuple(frozenset(link for link in ends if link in kept) for ends in links)

    appeared_or_went = before.keys() ^ after.keys()
    differ = {key for key in before.keys() & after.keys() if seen(before[key]) != seen(after[key])}
    return appeared_or_went | differ


@dataclass
class Watched:
    """The feed entries and the database changes of what ran inside `watch`."""

    entries: list[Entry] = field(default_factory=list)
    changed: set[str] = field(default_factory=set)
    cursors: list[str] = field(default_factory=list)


@asynccontextmanager
async def watch(client: Client, engine: sa.Engine) -> AsyncIterator[Watched]:
    since = await client.cursor()
    before = objects(engine, client.user_id)
    watched = Watched()
    yield watched
    changes, _ = await client.feed(since)
    watched.entries = [Entry.of(change) for change in changes]
    watched.cursors = [change["cursor"] for change in changes]
    watched.changed = changed_objects(before, objects(engine, client.user_id))


# --- one scenario per mutation ---------------------------------------------------------------


@dataclass
class World:
    api: Api
    engine: sa.Engine
    client: Client


Scenario = Callable[[World], Awaitable[tuple[Watched, set[Entry]]]]
SCENARIOS: dict[str, Scenario] = {}


def scenario(field_name: str) -> Callable[[Scenario], Scenario]:
    def register(fn: Scenario) -> Scenario:
        SCENARIOS[field_name] = fn
        return fn

    return register


@scenario("createTask")
async def _create_task(w: World) -> tuple[Watched, set[Entry]]:
    tag = await w.client.tag("work")
    parent = await w.client.task("parent")
    async with watch(w.client, w.engine) as seen:
        child = await w.client.task("child", tags=[tag], parent=parent)
    # One entry for the child (created with its tags: not CREATED and UPDATED); the parent
    # has a new subtask.
    return seen, {Entry("CREATED", child, LIVE), Entry("UPDATED", parent, LIVE)}


@scenario("updateTask")
async def _update_task(w: World) -> tuple[Watched, set[Entry]]:
    task = await w.client.task("draft")
    async with watch(w.client, w.engine) as seen:
        await w.client.mutate("updateTask", '(id: $id, input: {title: "final"})', "{ id }", id=task)
    return seen, {Entry("UPDATED", task, LIVE)}


@scenario("deleteTask")
async def _delete_task(w: World) -> tuple[Watched, set[Entry]]:
    task = await w.client.task("doomed")
    async with watch(w.client, w.engine) as seen:
        await w.client.mutate("deleteTask", "(id: $id)", "{ id }", id=task)
    return seen, {Entry("DELETED", task, TRASHED)}  # in the trash: `node` still shows it


@scenario("restoreTask")
async def _restore_task(w: World) -> tuple[Watched, set[Entry]]:
    task = await w.client.task("back")
    await w.client.mutate("deleteTask", "(id: $id)", "{ id }", id=task)
    async with watch(w.client, w.engine) as seen:
        await w.client.mutate("restoreTask", "(id: $id)", "{ id }", id=task)
    return seen, {Entry("RESTORED", task, LIVE)}


@scenario("completeTasks")
async def _complete_tasks(w: World) -> tuple[Watched, set[Entry]]:
    open_task, done = await w.client.task("open"), await w.client.task("done")
    await w.client.mutate("completeTasks", "(ids: $ids, completed: true)", "{ id }", ids=[done])
    async with watch(w.client, w.engine) as seen:
        await w.client.mutate(
            "completeTasks", "(ids: $ids, completed: true)", "{ id }", ids=[open_task, done]
        )
    return seen, {Entry("UPDATED", open_task, LIVE)}  # the one done already did not change


@scenario("deleteTasks")
async def _delete_tasks(w: World) -> tuple[Watched, set[Entry]]:
    first, second = await w.client.task("one"), await w.client.task("two")
    async with watch(w.client, w.engine) as seen:
        await w.client.mutate("deleteTasks", "(ids: $ids)", "{ id }", ids=[first, second])
    return seen, {Entry("DELETED", first, TRASHED), Entry("DELETED", second, TRASHED)}


@scenario("setTaskTags")
async def _set_task_tags(w: World) -> tuple[Watched, set[Entry]]:
    old, new = await w.client.tag("old"), await w.client.tag("new")
    task = await w.client.task("tagged", tags=[old])
    async with watch(w.client, w.engine) as seen:
        await w.client.mutate(
            "setTaskTags", "(taskId: $taskId, tagIds: $tagIds)", "{ id }", taskId=task, tagIds=[new]
        )
    return seen, {Entry("UPDATED", task, LIVE)}  # the task's tags; the tags themselves did not


@scenario("addTagToTask")
async def _add_tag_to_task(w: World) -> tuple[Watched, set[Entry]]:
    tag, task = await w.client.tag("t"), await w.client.task("task")
    async with watch(w.client, w.engine) as seen:
        await w.client.mutate(
            "addTagToTask", "(taskId: $taskId, tagId: $tagId)", "{ id }", taskId=task, tagId=tag
        )
    return seen, {Entry("UPDATED", task, LIVE)}


@scenario("removeTagFromTask")
async def _remove_tag_from_task(w: World) -> tuple[Watched, set[Entry]]:
    tag = await w.client.tag("t")
    task = await w.client.task("task", tags=[tag])
    async with watch(w.client, w.engine) as seen:
        await w.client.mutate(
            "removeTagFromTask",
            "(taskId: $taskId, tagId: $tagId)",
            "{ id }",
            taskId=task,
            tagId=tag,
        )
    return seen, {Entry("UPDATED", task, LIVE)}


@scenario("addSubtask")
async def _add_subtask(w: World) -> tuple[Watched, set[Entry]]:
    parent, child = await w.client.task("parent"), await w.client.task("child")
    async with watch(w.client, w.engine) as seen:
        await w.client.mutate(
            "addSubtask",
            "(parentId: $parentId, childId: $childId)",
            "{ id }",
            parentId=parent,
            childId=child,
        )
    # A subtask link updates both tasks: the parent's `subtasks`, the child's `parents`.
    return seen, {Entry("UPDATED", parent, LIVE), Entry("UPDATED", child, LIVE)}


@scenario("removeSubtask")
async def _remove_subtask(w: World) -> tuple[Watched, set[Entry]]:
    parent = await w.client.task("parent")
    child = await w.client.task("child", parent=parent)
    async with watch(w.client, w.engine) as seen:
        await w.client.mutate(
            "removeSubtask",
            "(parentId: $parentId, childId: $childId)",
            "{ id }",
            parentId=parent,
            childId=child,
        )
    return seen, {Entry("UPDATED", parent, LIVE), Entry("UPDATED", child, LIVE)}


@scenario("createTag")
async def _create_tag(w: World) -> tuple[Watched, set[Entry]]:
    async with watch(w.client, w.engine) as seen:
        tag = await w.client.tag("fresh")
    return seen, {Entry("CREATED", tag, LIVE)}


@scenario("updateTag")
async def _update_tag(w: World) -> tuple[Watched, set[Entry]]:
    tag = await w.client.tag("before")
    async with watch(w.client, w.engine) as seen:
        await w.client.mutate("updateTag", '(id: $id, input: {name: "after"})', "{ id }", id=tag)
    return seen, {Entry("UPDATED", tag, LIVE)}


@scenario("deleteTag")
async def _delete_tag(w: World) -> tuple[Watched, set[Entry]]:
    tag = await w.client.tag("doomed")
    await w.client.task("tagged", tags=[tag])
    async with watch(w.client, w.engine) as seen:
        await w.client.mutate("deleteTag", "(id: $id)", "{ id }", id=tag)
    # The tag only: it leaves its tasks' `tags`, which the client applies from this change.
    return seen, {Entry("DELETED", tag, TRASHED)}


@scenario("restoreTag")
async def _restore_tag(w: World) -> tuple[Watched, set[Entry]]:
    tag = await w.client.tag("back")
    await w.client.mutate("deleteTag", "(id: $id)", "{ id }", id=tag)
    async with watch(w.client, w.engine) as seen:
        await w.client.mutate("restoreTag", "(id: $id)", "{ id }", id=tag)
    return seen, {Entry("RESTORED", tag, LIVE)}


@scenario("createConversation")
async def _create_conversation(w: World) -> tuple[Watched, set[Entry]]:
    async with watch(w.client, w.engine) as seen:
        conversation = await w.client.conversation()
    return seen, {Entry("CREATED", conversation, LIVE)}


@scenario("updateConversation")
async def _update_conversation(w: World) -> tuple[Watched, set[Entry]]:
    conversation = await w.client.conversation()
    async with watch(w.client, w.engine) as seen:
        await w.client.mutate(
            "updateConversation", '(id: $id, input: {title: "renamed"})', "{ id }", id=conversation
        )
    return seen, {Entry("UPDATED", conversation, LIVE)}


@scenario("deleteConversation")
async def _delete_conversation(w: World) -> tuple[Watched, set[Entry]]:
    conversation = await w.client.conversation()
    await w.client.post(conversation)
    async with watch(w.client, w.engine) as seen:
        await w.client.mutate("deleteConversation", "(id: $id)", "{ id }", id=conversation)
    return seen, {Entry("DELETED", conversation, TRASHED)}


@scenario("restoreConversation")
async def _restore_conversation(w: World) -> tuple[Watched, set[Entry]]:
    conversation = await w.client.conversation()
    await w.client.mutate("deleteConversation", "(id: $id)", "{ id }", id=conversation)
    async with watch(w.client, w.engine) as seen:
        await w.client.mutate("restoreConversation", "(id: $id)", "{ id }", id=conversation)
    return seen, {Entry("RESTORED", conversation, LIVE)}


@scenario("postMessage")
async def _post_message(w: World) -> tuple[Watched, set[Entry]]:
    conversation = await w.client.conversation()
    async with watch(w.client, w.engine) as seen:
        message = await w.client.post(conversation)
    # The conversation's latest activity (`updatedAt`) moved to the message.
    return seen, {Entry("CREATED", message, LIVE), Entry("UPDATED", conversation, LIVE)}


@scenario("emptyTrash")
async def _empty_trash(w: World) -> tuple[Watched, set[Entry]]:
    c = w.client
    tag = await c.tag("trashed tag")
    live_parent = await c.task("stays", tags=[tag])
    task = await c.task("trashed", tags=[tag], parent=live_parent)
    conversation = await c.conversation()
    messages = [await c.post(conversation, "one"), await c.post(conversation, "two")]
    await c.mutate("deleteTask", "(id: $id)", "{ id }", id=task)
    await c.mutate("deleteTag", "(id: $id)", "{ id }", id=tag)
    await c.mutate("deleteConversation", "(id: $id)", "{ id }", id=conversation)
    async with watch(c, w.engine) as seen:
        assert await c.mutate("emptyTrash") == 3
    # Gone for good: `node` is null, `id` still names what went, messages included.
    gone = [task, tag, conversation, *messages]
    return seen, {Entry("DELETED", global_id, GONE) for global_id in gone}


# Mutations that change no task, tag, conversation or message: nothing in the feed.


@scenario("signUp")
async def _sign_up(w: World) -> tuple[Watched, set[Entry]]:
    newcomer = Client(w.api, await w.api.sign_up())
    async with watch(newcomer, w.engine) as seen:
        pass
    assert await newcomer.cursor() == cursor.encode(0)  # a new account's feed is empty
    return seen, set()


@scenario("signIn")
async def _sign_in(w: World) -> tuple[Watched, set[Entry]]:
    async with watch(w.client, w.engine) as seen:
        await sign_in(w.client)
    return seen, set()


@scenario("updateMe")
async def _update_me(w: World) -> tuple[Watched, set[Entry]]:
    async with watch(w.client, w.engine) as seen:
        await w.client.mutate("updateMe", '(input: {name: "New Name"})', "{ id }")
    return seen, set()  # the account is not an object of the feed


@scenario("changePassword")
async def _change_password(w: World) -> tuple[Watched, set[Entry]]:
    async with watch(w.client, w.engine) as seen:
        payload = await w.client.mutate(
            "changePassword",
            '(currentPassword: "password123", newPassword: "password456")',
            "{ token }",
        )
        w.client.account.token = payload["token"]
    return seen, set()


@scenario("signOutEverywhere")
async def _sign_out_everywhere(w: World) -> tuple[Watched, set[Entry]]:
    async with watch(w.client, w.engine) as seen:
        await w.client.mutate("signOutEverywhere")
        await sign_in(w.client)
    return seen, set()


@scenario("deleteMe")
async def _delete_me(w: World) -> tuple[Watched, set[Entry]]:
    c = w.client
    await c.task("mine")
    assert feed_rows(w.engine, c.user_id) == 1
    assert await c.mutate("deleteMe", '(password: "password123")') is True
    assert feed_rows(w.engine, c.user_id) == 0  # the feed goes with the account
    return Watched(), set()


async def sign_in(client: Client) -> None:
    data = await client.api.execute(
        'mutation($e: String!) { signIn(input: {email: $e, password: "password123"}) { token } }',
        {"e": client.account.email},
    )
    client.account.token = data.ok()["signIn"]["token"]


def feed_rows(engine: sa.Engine, user_id: str) -> int:
    with engine.connect() as conn:
        count = sa.select(sa.func.count()).select_from(CHANGES).where(CHANGES.c.user_id == user_id)
        return int(conn.execute(count).scalar_one())


def mutation_fields() -> set[str]:
    mutation = schema._schema.mutation_type
    assert isinstance(mutation, GraphQLObjectType)
    return set(mutation.fields)


def test_every_mutation_has_a_feed_scenario() -> None:
    missing = mutation_fields() - set(SCENARIOS)
    assert not missing, f"add change feed scenarios for: {sorted(missing)}"
    assert not set(SCENARIOS) - mutation_fields(), "a scenario names no mutation"


@pytest.mark.parametrize("field_name", sorted(SCENARIOS))
async def test_each_mutation_records_exactly_what_it_changed(
    api: Api, engine: sa.Engine, field_name: str
) -> None:
    world = World(api, engine, Client(api, await api.sign_up()))
    seen, expected = await SCENARIOS[field_name](world)
    assert sorted(seen.entries, key=repr) == sorted(expected, key=repr)
    assert len(seen.entries) == len(expected)  # once per object: no duplicates
    assert {entry.id for entry in seen.entries} == seen.changed, (
        "the feed must name exactly the objects the mutation changed"
    )


# --- order, pages, cursors -------------------------------------------------------------------


@pytest.fixture
async def alice(api: Api) -> Client:
    return Client(api, await api.sign_up())


@pytest.fixture
async def bob(api: Api) -> Client:
    return Client(api, await api.sign_up())


async def test_changes_come_in_commit_order_page_by_page(alice: Client) -> None:
    created = [await alice.task(f"task {n}") for n in range(5)]
    await alice.mutate("deleteTask", "(id: $id)", "{ id }", id=created[1])

    first = await alice.page(None, 2)
    second = await alice.page(first["cursor"], 2)
    third = await alice.page(second["cursor"], 2)
    pages = [first, second, third]

    assert [page["hasMore"] for page in pages] == [True, True, False]
    ids = [change["id"] for page in pages for change in page["changes"]]
    kinds = [change["kind"] for page in pages for change in page["changes"]]
    assert ids == [*created, created[1]]
    assert kinds == ["CREATED"] * 5 + ["DELETED"]
    assert first["cursor"] == first["changes"][-1]["cursor"]  # a page ends at its last change
    positions = [cursor.decode(c["cursor"]) for page in pages for c in page["changes"]]
    assert positions == [1, 2, 3, 4, 5, 6]  # gapless


async def test_a_page_past_the_end_is_empty_and_keeps_its_cursor(alice: Client) -> None:
    await alice.task("only")
    end = await alice.page(None)
    assert len(end["changes"]) == 1
    assert end["hasMore"] is False
    after = await alice.page(end["cursor"])
    assert after == {"cursor": end["cursor"], "hasMore": False, "changes": []}
    nothing = await alice.page(None, 0)  # first: 0 answers where the feed starts
    assert nothing == {"cursor": cursor.encode(0), "hasMore": True, "changes": []}


async def test_any_changes_cursor_resumes_right_after_it(alice: Client) -> None:
    ids = [await alice.task(f"t{n}") for n in range(3)]
    changes, _ = await alice.feed()
    resumed = await alice.page(changes[0]["cursor"])
    assert [change["id"] for change in resumed["changes"]] == ids[1:]


async def test_bad_arguments_are_bad_user_input(alice: Client) -> None:
    for since, first, named in (
        ("garbage", 10, "since"),
        (None, 101, "first"),
        (None, -1, "first"),
    ):
        response = await alice.attempt(PAGE, since=since, first=first)
        assert response.codes == ["BAD_USER_INPUT"], response.body
        assert response.errors[0]["extensions"]["field"] == named


async def test_a_cursor_past_the_end_of_the_feed_is_expired(alice: Client) -> None:
    await alice.task("one")
    response = await alice.attempt(PAGE, since=cursor.encode(2))
    assert response.codes == ["CURSOR_EXPIRED"]
    assert "refetch" in response.errors[0]["message"]


# --- rollbacks -------------------------------------------------------------------------------


async def test_a_mutation_that_fails_midway_leaves_nothing(
    alice: Client, engine: sa.Engine
) -> None:
    parent = await alice.task("parent")
    # The task is inserted and the parent linked before the missing tag is found: rolled back.
    missing_tag = encode_id("Tag", uuid.uuid4())
    response = await alice.attempt(
        "mutation($p: ID, $g: [ID!]!) "
        '{ createTask(input: {title: "half", parentId: $p, tagIds: $g}) { id } }',
        p=parent,
        g=[missing_tag],
    )
    assert response.codes == ["NOT_FOUND"]
    changes, end = await alice.feed()
    assert [change["id"] for change in changes] == [parent]
    assert feed_rows(engine, alice.user_id) == 1
    after = await alice.task("next")
    resumed = await alice.page(end)
    assert [c["id"] for c in resumed["changes"]] == [after]
    assert cursor.decode(resumed["cursor"]) == 2  # no position was used up by the failure


async def test_idempotent_mutations_that_change_nothing_record_nothing(alice: Client) -> None:
    task = await alice.task("twice")
    await alice.mutate("deleteTask", "(id: $id)", "{ id }", id=task)
    end = await alice.cursor()
    await alice.mutate("deleteTask", "(id: $id)", "{ id }", id=task)
    await alice.mutate("updateTask", "(id: $id, input: {})", "{ id }", id=await alice.task("x"))
    changes, _ = await alice.feed(end)
    assert [change["kind"] for change in changes] == ["CREATED"]  # only the new task


# --- retention -------------------------------------------------------------------------------


async def test_purge_forgets_old_changes_and_old_cursors_expire(
    alice: Client, backend: Backend, engine: sa.Engine
) -> None:
    ids = [await alice.task(f"t{n}") for n in range(3)]
    changes, end = await alice.feed()
    with engine.begin() as conn:  # the first two were written long ago
        conn.execute(
            sa.update(CHANGES)
            .where(CHANGES.c.user_id == alice.user_id, CHANGES.c.seq <= 2)
            .values(committed_at=utcnow() - timedelta(days=31))
        )

    result = purge_trash(make_settings(backend.url), older_than=timedelta(days=30))

    assert result.changes == 2
    expired = await alice.attempt(PAGE, since=changes[0]["cursor"])
    assert expired.codes == ["CURSOR_EXPIRED"]
    assert expired.data is None
    from_start = await alice.page(None)  # null: from the start of what is kept
    assert [change["id"] for change in from_start["changes"]] == ids[2:]
    kept = await alice.page(changes[1]["cursor"])  # the oldest cursor still kept
    assert [change["id"] for change in kept["changes"]] == ids[2:]
    assert (await alice.page(end))["changes"] == []


async def test_a_retention_of_zero_forgets_everything_and_positions_go_on(
    alice: Client, backend: Backend
) -> None:
    await alice.task("old")
    _, end = await alice.feed()
    purge_trash(make_settings(backend.url, changes_retention_days=0), older_than=timedelta(0))
    assert await alice.page(None) == {"cursor": end, "hasMore": False, "changes": []}
    assert (await alice.page(end))["changes"] == []  # the newest cursor was not purged past
    new = await alice.task("new")
    page = await alice.page(end)
    assert [change["id"] for change in page["changes"]] == [new]
    assert cursor.decode(page["cursor"]) == 2


async def test_the_purge_records_what_it_deletes_for_good(alice: Client, backend: Backend) -> None:
    task = await alice.task("trashed")
    await alice.mutate("deleteTask", "(id: $id)", "{ id }", id=task)
    end = await alice.cursor()
    purge_trash(make_settings(backend.url), older_than=timedelta(0))
    changes, _ = await alice.feed(end)
    assert [Entry.of(change) for change in changes] == [Entry("DELETED", task, GONE)]


# --- scoping ---------------------------------------------------------------------------------


async def test_a_users_feed_shows_only_their_own_changes(alice: Client, bob: Client) -> None:
    mine = await alice.task("alice's")
    await bob.task("bob's")
    await bob.tag("bob's tag")
    changes, _ = await alice.feed()
    assert [change["id"] for change in changes] == [mine]


async def test_a_foreign_cursor_is_only_a_position_in_your_own_feed(
    alice: Client, bob: Client
) -> None:
    alice_ids = [await alice.task(f"a{n}") for n in range(3)]
    await bob.task("b0")
    bobs_cursor = (await bob.feed())[1]
    assert bobs_cursor == cursor.encode(1)  # nothing of Bob in it: a number
    page = await alice.page(bobs_cursor)
    assert [change["id"] for change in page["changes"]] == alice_ids[1:]


@POSTGRESQL_ONLY
async def test_row_level_security_hides_other_users_changes(
    alice: Client, bob: Client, backend: Backend
) -> None:
    await alice.task("a")
    await bob.task("b")
    app = sa.create_engine(backend.app_url)  # the API's role: row-level security applies
    try:
        with app.begin() as conn:
            assert conn.execute(sa.select(CHANGES.c.user_id)).all() == []  # unscoped: nothing
        with app.begin() as conn:
            scope_to_user(conn, alice.user_id)
            owners = conn.execute(sa.select(CHANGES.c.user_id)).scalars().all()  # no filter
            assert owners == [alice.user_id]
    finally:
        app.dispose()


# --- concurrency and notifications (PostgreSQL) ----------------------------------------------


@POSTGRESQL_ONLY
@pytest.mark.parametrize("async_driver", [True, False], ids=["asyncpg", "psycopg2-threads"])
async def test_concurrent_writers_get_gapless_positions_that_no_reader_skips(
    backend: Backend, engine: sa.Engine, async_driver: bool
) -> None:
    # More connections (and so threads) than concurrent requests: with psycopg2, a request
    # waiting for a connection holds a thread that the requests holding one may need.
    settings = make_settings(
        backend.app_url, db_async_driver=async_driver, db_pool_size=16, db_max_overflow=16
    )
    async with serve(settings) as api:
        # Without the differential twin: the feed moves between its read and the app's.
        writer = Client(Api(api.client, api.app), await api.sign_up())
        writers = 24
        read: list[dict[str, Any]] = []
        done = asyncio.Event()

        async def reader() -> None:
            since: str | None = None
            while not (done.is_set() and len(read) == writers):
                page = await writer.page(since, 5)
                start = 0 if since is None else cursor.decode(since)
                positions = [cursor.decode(c["cursor"]) for c in page["changes"]]
                # Every page is the next positions, with no hole a late commit could fill.
                assert positions == list(range(start + 1, start + 1 + len(positions)))
                read.extend(page["changes"])
                since = page["cursor"]
                await asyncio.sleep(0)

        async def write(n: int) -> str:
            return await writer.task(f"concurrent {n}")

        async def writing() -> list[str]:
            try:
                return list(await asyncio.gather(*(write(n) for n in range(writers))))
            finally:
                done.set()

        created, _ = await asyncio.gather(writing(), reader())

    assert sorted(change["id"] for change in read) == sorted(created)  # each once, none lost
    with engine.connect() as conn:
        seqs = conn.execute(
            sa.select(CHANGES.c.seq).where(CHANGES.c.user_id == writer.user_id).order_by("seq")
        ).scalars()
        assert list(seqs) == list(range(1, writers + 1))
        last = sa.select(USERS.c.change_seq).where(USERS.c.id == writer.user_id)
        assert conn.execute(last).scalar_one() == writers


def _uncommitted_task(engine: sa.Engine, user_id: str) -> tuple[sa.Connection, uuid.UUID]:
    """A task created and its change recorded (the user's row locked, NOTIFY sent) in a
    transaction left open: the caller commits or rolls it back."""
    conn = engine.connect()
    conn.begin()
    scope_to_user(conn, user_id)
    with recording(conn):
        task_id = tasks.create_task(conn, user_id, {"title": "direct"})["id"]
    return conn, task_id


async def _wait_for_lock_waiter(engine: sa.Engine) -> None:
    """Until a backend waits for a row lock (the API's write behind the open transaction)."""
    query = sa.text(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND datname = current_database()"
    )
    for _ in range(600):
        with engine.connect() as conn:
            if conn.execute(query).scalar_one():
                return
        await asyncio.sleep(0.05)
    raise AssertionError("the API's write never waited for the user's row lock")


@POSTGRESQL_ONLY
async def test_a_writer_that_commits_later_gets_the_later_position(
    backend: Backend, engine: sa.Engine
) -> None:
    async with serve(make_settings(backend.app_url, db_lock_timeout_ms=0)) as api:
        alice = Client(api, await api.sign_up())  # its writes wait for locks as long as needed
        await _commits_later(alice, engine)


async def _commits_later(alice: Client, engine: sa.Engine) -> None:
    conn, direct = _uncommitted_task(engine, alice.user_id)
    try:
        through_api = asyncio.ensure_future(alice.task("through the API"))
        await _wait_for_lock_waiter(engine)
        # Meanwhile a reader sees nothing: position 1 is taken, but not committed.
        assert await alice.page(None) == {
            "cursor": cursor.encode(0),
            "hasMore": False,
            "changes": [],
        }
        conn.commit()
    finally:
        conn.close()
    api_task = await through_api
    changes, _ = await alice.feed()
    assert [change["id"] for change in changes] == [encode_id("Task", direct), api_task]


@POSTGRESQL_ONLY
async def test_notify_is_sent_on_commit_only(api: Api, backend: Backend, engine: sa.Engine) -> None:
    alice, bob, carol = [Client(api, await api.sign_up()) for _ in range(3)]
    listener = psycopg2.connect(
        sa.make_url(backend.url).set(drivername="postgresql").render_as_string(hide_password=False)
    )
    listener.autocommit = True
    try:
        listener.cursor().execute("LISTEN changes")
        rolled_back, _ = _uncommitted_task(engine, bob.user_id)
        rolled_back.rollback()
        rolled_back.close()
        held, _ = _uncommitted_task(engine, alice.user_id)  # pg_notify called, not committed
        try:
            await carol.task("committed")  # notified at its commit, before Alice's
            held.commit()
        finally:
            held.close()
        payloads = _notifications(listener, 2)
    finally:
        listener.close()
    # Bob's rolled-back change was never announced; Alice's only when it committed.
    assert payloads == [f"{carol.user_id} 1", f"{alice.user_id} 1"]
    assert await bob.page(None) == {"cursor": cursor.encode(0), "hasMore": False, "changes": []}


def _notifications(listener: Any, count: int) -> list[str]:
    received: list[str] = []
    while len(received) < count:
        ready, _, _ = select.select([listener], [], [], 30)
        assert ready, f"expected {count} notifications, got {received}"
        listener.poll()
        while listener.notifies:
            notification = listener.notifies.pop(0)
            assert notification.channel == "changes"
            received.append(notification.payload)
    return received


# --- cost ------------------------------------------------------------------------------------


async def test_a_write_pays_one_statement_and_a_read_nothing_on_postgresql(
    alice: Client, api: Api, backend: Backend
) -> None:
    with api.count_statements() as counter:
        await alice.task("counted")
    feed_statements = [s for s in counter.statements if "change" in s]
    expected = 1 if backend.name == "postgresql" else 2  # SQLite: the counter, then the rows
    assert len(feed_statements) == expected, counter.statements
    with api.count_statements() as counter:
        await alice.run("{ tasks { nodes { id title tags { id } subtasks { id } } } }")
    assert not [s for s in counter.statements if "change" in s]
