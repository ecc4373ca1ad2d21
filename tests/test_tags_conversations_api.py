"""Tags and conversations over HTTP, including their nested, per-parent connections."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import THROUGH_POOLER
from tests.helpers import Account, Api

pytestmark = THROUGH_POOLER  # these hold behind Neon's pooler too

CREATE_TAG = "mutation($input: CreateTagInput!) { createTag(input: $input) { id name color } }"
UPDATE_TAG = "mutation($id: ID!, $input: UpdateTagInput!) { updateTag(id: $id, input: $input) { name color } }"
TAG_TASKS = """
query($first: Int, $after: String, $last: Int) {
  tags {
    edges { node { name tasks(first: $first, after: $after, last: $last) {
      totalCount edges { node { title } } pageInfo { hasNextPage hasPreviousPage endCursor }
    } } }
  }
}"""


@pytest.fixture
async def user(api: Api) -> Account:
    return await api.sign_up()


async def create_tag(api: Api, user: Account, **fields: Any) -> dict[str, Any]:
    response = await api.execute(CREATE_TAG, {"input": {"name": "tag", **fields}}, as_user=user)
    tag: dict[str, Any] = response.ok()["createTag"]
    return tag


async def test_create_update_and_delete_a_tag(api: Api, user: Account) -> None:
    tag = await create_tag(api, user, name="Work", color="#00ff7f")
    assert tag["color"] == "#00FF7F"
    renamed = await api.execute(
        UPDATE_TAG, {"id": tag["id"], "input": {"name": "Job"}}, as_user=user
    )
    assert renamed.ok()["updateTag"] == {"name": "Job", "color": "#00FF7F"}

    deleted = await api.execute(
        "mutation($id: ID!) { deleteTag(id: $id) { deletedAt } }", {"id": tag["id"]}, as_user=user
    )
    assert deleted.ok()["deleteTag"]["deletedAt"] is not None
    in_trash = await api.execute(
        "query($id: ID!) { tag(id: $id) { id deletedAt } }", {"id": tag["id"]}, as_user=user
    )
    assert in_trash.ok()["tag"] == deleted.ok()["deleteTag"] | {"id": tag["id"]}  # as a task
    assert (await create_tag(api, user, name="job"))["name"] == "job"  # the name is free again


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 51}, "name"),
        ({"color": "red"}, "color"),
        ({"color": "#12345"}, "color"),
        ({"color": "#GGGGGG"}, "color"),
    ],
)
async def test_tag_input_limits(
    api: Api, user: Account, fields: dict[str, str], field: str
) -> None:
    response = await api.execute(CREATE_TAG, {"input": {"name": "ok", **fields}}, as_user=user)
    assert response.codes == ["BAD_USER_INPUT"]
    assert response.errors[0]["extensions"]["field"] == field


async def test_duplicate_tag_names_conflict_ignoring_case(api: Api, user: Account) -> None:
    await create_tag(api, user, name="Home")
    other = await create_tag(api, user, name="Garden")
    duplicate = await api.execute(CREATE_TAG, {"input": {"name": "HOME"}}, as_user=user)
    assert duplicate.codes == ["CONFLICT"]
    renamed = await api.execute(
        UPDATE_TAG, {"id": other["id"], "input": {"name": "home"}}, as_user=user
    )
    assert renamed.codes == ["CONFLICT"]
    same = await api.execute(
        UPDATE_TAG, {"id": other["id"], "input": {"name": "GARDEN"}}, as_user=user
    )
    assert same.ok()["updateTag"]["name"] == "GARDEN"


async def test_tags_are_listed_by_name_and_searchable(api: Api, user: Account) -> None:
    for name in ("beta", "Alpha", "gamma", "alphabet"):
        await create_tag(api, user, name=name)
    query = "query($s: String, $first: Int, $after: String) { tags(search: $s, first: $first, after: $after) { totalCount edges { node { name } } pageInfo { endCursor } } }"
    listed = (await api.execute(query, {}, as_user=user)).ok()["tags"]
    assert [e["node"]["name"] for e in listed["edges"]] == ["Alpha", "alphabet", "beta", "gamma"]
    found = (await api.execute(query, {"s": "ALPHA"}, as_user=user)).ok()["tags"]
    assert found["totalCount"] == 2
    page = (await api.execute(query, {"first": 2}, as_user=user)).ok()["tags"]
    rest = (await api.execute(query, {"after": page["pageInfo"]["endCursor"]}, as_user=user)).ok()
    assert [e["node"]["name"] for e in rest["tags"]["edges"]] == ["beta", "gamma"]


async def test_tag_tasks_paginate_per_tag(api: Api, user: Account) -> None:
    busy, quiet, _empty = [
        await create_tag(api, user, name=n) for n in ("a-busy", "b-quiet", "c-empty")
    ]
    for n in range(5):
        await api.execute(
            "mutation($t: [ID!]!, $title: String!) { createTask(input: {title: $title, tagIds: $t}) { id } }",
            {"t": [busy["id"]] + ([quiet["id"]] if n == 0 else []), "title": f"t{n}"},
            as_user=user,
        )
    tags = (await api.execute(TAG_TASKS, {"first": 2}, as_user=user)).ok()["tags"]["edges"]
    pages = {tag["node"]["name"]: tag["node"]["tasks"] for tag in tags}
    assert [e["node"]["title"] for e in pages["a-busy"]["edges"]] == ["t4", "t3"]
    assert pages["a-busy"]["pageInfo"]["hasNextPage"] is True
    assert pages["a-busy"]["totalCount"] == 5
    assert [e["node"]["title"] for e in pages["b-quiet"]["edges"]] == ["t0"]
    assert pages["b-quiet"]["pageInfo"]["hasNextPage"] is False
    assert pages["c-empty"] == {
        "totalCount": 0,
        "edges": [],
        "pageInfo": {"hasNextPage": False, "hasPreviousPage": False, "endCursor": None},
    }
    after = pages["a-busy"]["pageInfo"]["endCursor"]
    next_page = (await api.execute(TAG_TASKS, {"first": 2, "after": after}, as_user=user)).ok()
    busy_next = next_page["tags"]["edges"][0]["node"]["tasks"]
    assert [e["node"]["title"] for e in busy_next["edges"]] == ["t2", "t1"]
    assert busy_next["pageInfo"]["hasPreviousPage"] is True


async def test_nested_counts_agree_however_the_page_is_asked(api: Api, user: Account) -> None:
    """A first page counts its list in its own statement; past a cursor a count statement
    does: both must count the live tasks only, for every tag, whichever end is paged."""
    busy, _empty = [await create_tag(api, user, name=n) for n in ("a-busy", "b-empty")]
    ids = [
        (
            await api.execute(
                'mutation($t: [ID!]!) { createTask(input: {title: "t", tagIds: $t}) { id } }',
                {"t": [busy["id"]]},
                as_user=user,
            )
        ).ok()["createTask"]["id"]
        for _ in range(4)
    ]
    await api.execute(
        "mutation($id: ID!) { deleteTask(id: $id) { id } }", {"id": ids[0]}, as_user=user
    )

    def counts(answer: dict[str, Any]) -> dict[str, int]:
        edges = answer["tags"]["edges"]
        return {e["node"]["name"]: e["node"]["tasks"]["totalCount"] for e in edges}

    first = (await api.execute(TAG_TASKS, {"first": 2}, as_user=user)).ok()
    last = (await api.execute(TAG_TASKS, {"last": 1}, as_user=user)).ok()
    cursor = first["tags"]["edges"][0]["node"]["tasks"]["pageInfo"]["endCursor"]
    after = (await api.execute(TAG_TASKS, {"first": 2, "after": cursor}, as_user=user)).ok()
    expected = {"a-busy": 3, "b-empty": 0}
    assert counts(first) == counts(last) == counts(after) == expected


async def test_a_deleted_tag_leaves_its_tasks(api: Api, user: Account) -> None:
    tag = await create_tag(api, user)
    task = (
        await api.execute(
            'mutation($t: ID!) { createTask(input: {title: "x", tagIds: [$t]}) { id } }',
            {"t": tag["id"]},
            as_user=user,
        )
    ).ok()["createTask"]
    await api.execute(
        "mutation($id: ID!) { deleteTag(id: $id) { id } }", {"id": tag["id"]}, as_user=user
    )
    after = await api.execute(
        "query($id: ID!) { task(id: $id) { tags { id } } }", {"id": task["id"]}, as_user=user
    )
    assert after.ok()["task"]["tags"] == []


POST = "mutation($c: ID!, $input: PostMessageInput!) { postMessage(conversationId: $c, input: $input) { id role content createdAt conversation { id } } }"
CONVERSATIONS = """
query($last: Int, $first: Int) {
  conversations(first: $first) {
    totalCount
    edges { node { id title messages(last: $last) { totalCount nodes { content } pageInfo { hasPreviousPage } } } }
  }
}"""


async def create_conversation(api: Api, user: Account, title: str | None = None) -> str:
    input_ = {} if title is None else {"title": title}
    response = await api.execute(
        "mutation($input: CreateConversationInput!) { createConversation(input: $input) { id title } }",
        {"input": input_},
        as_user=user,
    )
    conversation_id: str = response.ok()["createConversation"]["id"]
    return conversation_id


async def test_conversations_order_by_latest_activity_with_last_messages(
    api: Api, user: Account
) -> None:
    old = await create_conversation(api, user, "old")
    new = await create_conversation(api, user)
    for n in range(3):
        message = {"role": "USER", "content": f"m{n}"}
        posted = (await api.execute(POST, {"c": old, "input": message}, as_user=user)).ok()
        assert posted["postMessage"]["conversation"]["id"] == old
    listed = (await api.execute(CONVERSATIONS, {"last": 2}, as_user=user)).ok()["conversations"]
    assert listed["totalCount"] == 2
    assert [e["node"]["id"] for e in listed["edges"]] == [old, new]
    messages = listed["edges"][0]["node"]["messages"]
    assert [m["content"] for m in messages["nodes"]] == ["m1", "m2"]
    assert messages["totalCount"] == 3
    assert messages["pageInfo"]["hasPreviousPage"] is True
    assert listed["edges"][1]["node"]["title"] == "New Chat"


@pytest.mark.parametrize(
    ("message", "field"),
    [
        ({"role": "USER", "content": ""}, "content"),
        ({"role": "USER", "content": "x" * 10001}, "content"),
    ],
)
async def test_message_limits(api: Api, user: Account, message: dict[str, str], field: str) -> None:
    conversation = await create_conversation(api, user)
    response = await api.execute(POST, {"c": conversation, "input": message}, as_user=user)
    assert response.codes == ["BAD_USER_INPUT"]
    assert response.errors[0]["extensions"]["field"] == field
    ok = await api.execute(
        POST, {"c": conversation, "input": {"role": "SYSTEM", "content": "x" * 10000}}, as_user=user
    )
    assert ok.ok()["postMessage"]["role"] == "SYSTEM"


async def test_update_and_delete_a_conversation(api: Api, user: Account) -> None:
    conversation = await create_conversation(api, user)
    (
        await api.execute(
            POST, {"c": conversation, "input": {"role": "USER", "content": "hi"}}, as_user=user
        )
    ).ok()
    renamed = await api.execute(
        'mutation($id: ID!) { updateConversation(id: $id, input: {title: "Renamed"}) { title } }',
        {"id": conversation},
        as_user=user,
    )
    assert renamed.ok()["updateConversation"]["title"] == "Renamed"
    too_long = await api.execute(
        "mutation($id: ID!, $t: String!) { updateConversation(id: $id, input: {title: $t}) { title } }",
        {"id": conversation, "t": "x" * 201},
        as_user=user,
    )
    assert too_long.codes == ["BAD_USER_INPUT"]
    (
        await api.execute(
            "mutation($id: ID!) { deleteConversation(id: $id) { deletedAt } }",
            {"id": conversation},
            as_user=user,
        )
    ).ok()
    assert (await api.execute(CONVERSATIONS, {}, as_user=user)).ok()["conversations"][
        "totalCount"
    ] == 0
    posting = await api.execute(
        POST, {"c": conversation, "input": {"role": "USER", "content": "x"}}, as_user=user
    )
    assert posting.codes == ["CONFLICT"]  # in the trash: restore it first (as a task)


async def test_node_resolves_every_entity_type(api: Api, user: Account) -> None:
    tag = await create_tag(api, user)
    conversation = await create_conversation(api, user)
    message = (
        await api.execute(
            POST, {"c": conversation, "input": {"role": "USER", "content": "hi"}}, as_user=user
        )
    ).ok()
    task = (
        await api.execute('mutation { createTask(input: {title: "t"}) { id } }', as_user=user)
    ).ok()
    ids = {
        "Tag": tag["id"],
        "Conversation": conversation,
        "Message": message["postMessage"]["id"],
        "Task": task["createTask"]["id"],
        "User": user.id,
    }
    for type_name, global_id in ids.items():
        node = await api.execute(
            "query($id: ID!) { node(id: $id) { __typename id } }", {"id": global_id}, as_user=user
        )
        assert node.ok()["node"] == {"__typename": type_name, "id": global_id}


async def test_me_exposes_the_same_lists_as_the_root(api: Api, user: Account) -> None:
    await create_tag(api, user, name="t")
    await create_conversation(api, user)
    (await api.execute('mutation { createTask(input: {title: "t"}) { id } }', as_user=user)).ok()
    me = (
        await api.execute(
            "{ me { tasks { totalCount } tags { totalCount } conversations { totalCount } } }",
            as_user=user,
        )
    ).ok()
    assert me["me"] == {
        "tasks": {"totalCount": 1},
        "tags": {"totalCount": 1},
        "conversations": {"totalCount": 1},
    }
