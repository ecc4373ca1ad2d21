"""Tasks over HTTP: create, read, update, trash and restore, bulk completion, tags, subtasks,
filters, ordering and keyset pagination."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import THROUGH_POOLER
from tests.helpers import Account, Api

pytestmark = THROUGH_POOLER  # these hold behind Neon's pooler too

TASK_FIELDS = "id title description completed completedAt priority dueDate deletedAt isOverdue"
CREATE = f"mutation($input: CreateTaskInput!) {{ createTask(input: $input) {{ {TASK_FIELDS} }} }}"
UPDATE = (
    "mutation($id: ID!, $input: UpdateTaskInput!) "
    f"{{ updateTask(id: $id, input: $input) {{ {TASK_FIELDS} updatedAt }} }}"
)
LIST = """
query($filter: TaskFilter, $orderBy: [TaskOrder!], $first: Int, $after: String,
      $last: Int, $before: String) {
  tasks(filter: $filter, orderBy: $orderBy, first: $first, after: $after,
        last: $last, before: $before) {
    totalCount
    edges { cursor node { id title } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}"""


async def create_task(api: Api, user: Account, **fields: Any) -> dict[str, Any]:
    task: dict[str, Any] = (
        await api.execute(CREATE, {"input": {"title": "task", **fields}}, as_user=user)
    ).ok()["createTask"]
    return task


async def create_tag(api: Api, user: Account, name: str) -> str:
    data = (
        await api.execute(
            "mutation($n: String!) { createTag(input: {name: $n}) { id } }",
            {"n": name},
            as_user=user,
        )
    ).ok()
    tag_id: str = data["createTag"]["id"]
    return tag_id


async def titles(api: Api, user: Account, **variables: Any) -> list[str]:
    data = (await api.execute(LIST, variables, as_user=user)).ok()["tasks"]
    return [edge["node"]["title"] for edge in data["edges"]]


@pytest.fixture
async def user(api: Api) -> Account:
    return await api.sign_up()


async def test_create_task_with_defaults(api: Api, user: Account) -> None:
    task = await create_task(api, user, title="  Write tests  ")
    assert task["title"] == "Write tests"
    assert task["priority"] == "MEDIUM"
    assert task["completed"] is False
    assert task["description"] is None
    assert task["deletedAt"] is None


async def test_create_task_with_tags_and_parent_in_one_call(api: Api, user: Account) -> None:
    work, home = await create_tag(api, user, "work"), await create_tag(api, user, "home")
    parent = await create_task(api, user, title="parent")
    response = await api.execute(
        "mutation($input: CreateTaskInput!) { createTask(input: $input) "
        "{ title tags { name } parents { title } } }",
        {"input": {"title": "child", "tagIds": [work, home], "parentId": parent["id"]}},
        as_user=user,
    )
    created = response.ok()["createTask"]
    assert created["tags"] == [{"name": "home"}, {"name": "work"}]
    assert created["parents"] == [{"title": "parent"}]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"title": ""}, "title"),
        ({"title": " \t "}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"description": "x" * 1001}, "description"),
    ],
)
async def test_create_task_refuses_input_past_the_limits(
    api: Api, user: Account, fields: dict[str, Any], field: str
) -> None:
    response = await api.execute(CREATE, {"input": {"title": "ok", **fields}}, as_user=user)
    assert response.codes == ["BAD_USER_INPUT"]
    assert response.errors[0]["extensions"]["field"] == field
    assert (await titles(api, user)) == []


async def test_limits_are_inclusive(api: Api, user: Account) -> None:
    task = await create_task(api, user, title="x" * 200, description="y" * 1000)
    assert len(task["title"]) == 200


async def test_a_failed_create_writes_nothing(api: Api, user: Account) -> None:
    response = await api.execute(
        CREATE, {"input": {"title": "t", "tagIds": ["VGFnOm5vdC1hLXV1aWQ="]}}, as_user=user
    )
    assert response.codes == ["NOT_FOUND"]
    assert (await titles(api, user)) == []


async def test_a_failing_mutation_nulls_only_itself(api: Api, user: Account) -> None:
    response = await api.execute(
        'mutation { a: createTask(input: {title: "ok"}) { id } '
        'b: createTask(input: {title: ""}) { id } }',
        as_user=user,
    )
    assert response.status == 200
    assert response.data["b"] is None
    assert response.codes == ["BAD_USER_INPUT"]
    assert response.errors[0]["path"] == ["b"]
    assert response.errors[0]["extensions"]["field"] == "title"
    saved = response.data["a"]["id"]  # `a` was saved, and the client learns its id
    refetched = await api.execute(
        "query($id: ID!) { task(id: $id) { id title } }", {"id": saved}, as_user=user
    )
    assert refetched.ok() == {"task": {"id": saved, "title": "ok"}}
    assert await titles(api, user) == ["ok"]
    # Mutations run one after the other; those after a refused one still run.
    later = await api.execute(
        'mutation { b: createTask(input: {title: ""}) { id } c: createTask(input: {title: "c"}) '
        "{ title } }",
        as_user=user,
    )
    assert later.data == {"b": None, "c": {"title": "c"}}
    assert later.codes == ["BAD_USER_INPUT"]


async def test_update_is_partial_and_null_clears(api: Api, user: Account) -> None:
    due = "2031-05-01T10:00:00+00:00"
    task = await create_task(api, user, title="t", description="d", dueDate=due, priority="HIGH")
    updated = (
        await api.execute(UPDATE, {"id": task["id"], "input": {"description": None}}, as_user=user)
    ).ok()["updateTask"]
    assert updated["description"] is None
    assert updated["title"] == "t"
    assert updated["priority"] == "HIGH"
    assert updated["dueDate"] == due


async def test_update_refuses_null_for_a_required_field(api: Api, user: Account) -> None:
    task = await create_task(api, user)
    response = await api.execute(UPDATE, {"id": task["id"], "input": {"title": None}}, as_user=user)
    assert response.codes == ["BAD_USER_INPUT"]
    assert response.errors[0]["extensions"]["field"] == "title"


async def test_completing_sets_and_clears_completed_at(api: Api, user: Account) -> None:
    task = await create_task(api, user)
    done = (
        await api.execute(UPDATE, {"id": task["id"], "input": {"completed": True}}, as_user=user)
    ).ok()["updateTask"]
    assert done["completed"] is True
    assert done["completedAt"] is not None
    reopened = (
        await api.execute(UPDATE, {"id": task["id"], "input": {"completed": False}}, as_user=user)
    ).ok()["updateTask"]
    assert reopened["completedAt"] is None


async def test_is_overdue(api: Api, user: Account) -> None:
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert (await create_task(api, user, dueDate=past))["isOverdue"] is True
    assert (await create_task(api, user, dueDate=future))["isOverdue"] is False
    assert (await create_task(api, user, dueDate=past, completed=True))["isOverdue"] is False
    assert (await create_task(api, user))["isOverdue"] is False


async def test_delete_moves_to_the_trash_and_restore_brings_back(api: Api, user: Account) -> None:
    task = await create_task(api, user, title="trash me")
    await create_task(api, user, title="keep")
    deleted = (
        await api.execute(
            "mutation($id: ID!) { deleteTask(id: $id) { deletedAt } }",
            {"id": task["id"]},
            as_user=user,
        )
    ).ok()["deleteTask"]
    assert deleted["deletedAt"] is not None
    assert await titles(api, user) == ["keep"]
    assert await titles(api, user, filter={"deleted": True}) == ["trash me"]
    still_readable = await api.execute(
        "query($id: ID!) { task(id: $id) { title deletedAt } }", {"id": task["id"]}, as_user=user
    )
    assert still_readable.ok()["task"]["title"] == "trash me"

    trashed_update = await api.execute(
        UPDATE, {"id": task["id"], "input": {"title": "x"}}, as_user=user
    )
    assert trashed_update.codes == ["CONFLICT"]

    restored = (
        await api.execute(
            "mutation($id: ID!) { restoreTask(id: $id) { deletedAt } }",
            {"id": task["id"]},
            as_user=user,
        )
    ).ok()["restoreTask"]
    assert restored["deletedAt"] is None
    assert sorted(await titles(api, user)) == ["keep", "trash me"]


COMPLETE = "mutation($ids: [ID!]!, $c: Boolean!) { completeTasks(ids: $ids, completed: $c) { id completed } }"


async def test_complete_tasks_is_all_or_nothing(api: Api, user: Account) -> None:
    first, second = await create_task(api, user), await create_task(api, user)
    missing = "VGFzazowMDAwMDAwMC0wMDAwLTAwMDAtMDAwMC0wMDAwMDAwMDAwMDA="
    failed = await api.execute(COMPLETE, {"ids": [first["id"], missing], "c": True}, as_user=user)
    assert failed.codes == ["NOT_FOUND"]
    assert await titles(api, user, filter={"completed": True}) == []

    done = (
        await api.execute(COMPLETE, {"ids": [second["id"], first["id"]], "c": True}, as_user=user)
    ).ok()["completeTasks"]
    assert [task["id"] for task in done] == [second["id"], first["id"]]
    assert all(task["completed"] for task in done)


async def test_tag_mutations_on_tasks(api: Api, user: Account) -> None:
    a, b, c = [await create_tag(api, user, name) for name in "abc"]
    task = await create_task(api, user)
    query = "mutation($t: ID!, $tags: [ID!]!) { setTaskTags(taskId: $t, tagIds: $tags) { tags { name } } }"
    tagged = (await api.execute(query, {"t": task["id"], "tags": [a, b]}, as_user=user)).ok()
    assert tagged["setTaskTags"]["tags"] == [{"name": "a"}, {"name": "b"}]
    retagged = (await api.execute(query, {"t": task["id"], "tags": [c, b]}, as_user=user)).ok()
    assert retagged["setTaskTags"]["tags"] == [{"name": "b"}, {"name": "c"}]

    add = "mutation($t: ID!, $g: ID!) { addTagToTask(taskId: $t, tagId: $g) { tags { name } } }"
    twice = [(await api.execute(add, {"t": task["id"], "g": a}, as_user=user)).ok() for _ in "12"]
    assert twice[1]["addTagToTask"]["tags"] == [{"name": "a"}, {"name": "b"}, {"name": "c"}]

    remove = (
        "mutation($t: ID!, $g: ID!) { removeTagFromTask(taskId: $t, tagId: $g) { tags { name } } }"
    )
    removed = (await api.execute(remove, {"t": task["id"], "g": b}, as_user=user)).ok()
    assert removed["removeTagFromTask"]["tags"] == [{"name": "a"}, {"name": "c"}]


ADD_SUBTASK = "mutation($p: ID!, $c: ID!) { addSubtask(parentId: $p, childId: $c) { title subtasks { title } } }"


async def test_subtasks_and_cycles(api: Api, user: Account) -> None:
    a, b, c = [await create_task(api, user, title=t) for t in "abc"]
    linked = (await api.execute(ADD_SUBTASK, {"p": a["id"], "c": b["id"]}, as_user=user)).ok()
    assert linked["addSubtask"] == {"title": "a", "subtasks": [{"title": "b"}]}
    (await api.execute(ADD_SUBTASK, {"p": b["id"], "c": c["id"]}, as_user=user)).ok()

    for parent, child in ((c, a), (b, a), (a, a)):
        cycle = await api.execute(ADD_SUBTASK, {"p": parent["id"], "c": child["id"]}, as_user=user)
        assert cycle.codes == ["CONFLICT"]

    unlink = "mutation($p: ID!, $c: ID!) { removeSubtask(parentId: $p, childId: $c) { subtasks { title } } }"
    removed = (await api.execute(unlink, {"p": a["id"], "c": b["id"]}, as_user=user)).ok()
    assert removed["removeSubtask"]["subtasks"] == []
    tree = await api.execute(
        "query($id: ID!) { task(id: $id) { parents { title } subtasks { title } } }",
        {"id": b["id"]},
        as_user=user,
    )
    assert tree.ok()["task"] == {"parents": [], "subtasks": [{"title": "c"}]}


async def test_filters_combine(api: Api, user: Account) -> None:
    work = await create_tag(api, user, "work")
    soon = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    later = (datetime.now(UTC) + timedelta(days=10)).isoformat()
    await create_task(
        api, user, title="Report 50% done", priority="HIGH", tagIds=[work], dueDate=soon
    )
    await create_task(
        api, user, title="report later", priority="HIGH", tagIds=[work], dueDate=later
    )
    await create_task(api, user, title="Call", priority="LOW", description="about the REPORT")
    await create_task(api, user, title="done", completed=True, tagIds=[work])

    cutoff = (datetime.now(UTC) + timedelta(days=5)).isoformat()
    assert await titles(api, user, filter={"search": "report"}) == [
        "Call",
        "report later",
        "Report 50% done",
    ]
    assert await titles(api, user, filter={"search": "50%"}) == ["Report 50% done"]
    assert await titles(api, user, filter={"search": "_"}) == []
    assert await titles(api, user, filter={"priority": "HIGH", "dueBefore": cutoff}) == [
        "Report 50% done"
    ]
    assert await titles(
        api, user, filter={"tagIds": [work], "completed": False, "dueAfter": cutoff}
    ) == ["report later"]
    assert await titles(api, user, filter={"completed": True}) == ["done"]


async def test_ordering_by_each_field_with_a_stable_tiebreaker(api: Api, user: Account) -> None:
    day = datetime(2031, 1, 1, tzinfo=UTC)
    await create_task(
        api, user, title="b", priority="LOW", dueDate=(day + timedelta(days=2)).isoformat()
    )
    await create_task(api, user, title="A", priority="HIGH")
    await create_task(api, user, title="c", priority="MEDIUM", dueDate=day.isoformat())
    await create_task(api, user, title="d", priority="HIGH", dueDate=day.isoformat())

    def order(*keys: tuple[str, str]) -> dict[str, Any]:
        return {"orderBy": [{"field": f, "direction": d} for f, d in keys]}

    assert await titles(api, user, **order(("TITLE", "ASC"))) == ["A", "b", "c", "d"]
    assert await titles(api, user, **order(("CREATED_AT", "ASC"))) == ["b", "A", "c", "d"]
    assert await titles(api, user) == ["d", "c", "A", "b"]  # default: newest first
    by_priority = await titles(api, user, **order(("PRIORITY", "DESC"), ("TITLE", "ASC")))
    assert by_priority == ["A", "d", "c", "b"]
    by_due = await titles(api, user, **order(("DUE_DATE", "ASC"), ("TITLE", "DESC")))
    assert by_due == ["d", "c", "b", "A"]  # no due date sorts last ascending
    assert await titles(api, user, **order(("DUE_DATE", "DESC"), ("TITLE", "ASC"))) == [
        "A",
        "b",
        "c",
        "d",
    ]


async def collect_pages(api: Api, user: Account, page_size: int, **variables: Any) -> list[str]:
    """Walk a whole list forward page by page, checking pageInfo on the way."""
    seen: list[str] = []
    after = None
    while True:
        data = (
            await api.execute(LIST, {**variables, "first": page_size, "after": after}, as_user=user)
        ).ok()["tasks"]
        seen += [edge["node"]["title"] for edge in data["edges"]]
        info = data["pageInfo"]
        assert info["hasPreviousPage"] is (after is not None)
        if not info["hasNextPage"]:
            return seen
        after = info["endCursor"]


@pytest.mark.parametrize(
    "order_by",
    [
        None,
        [{"field": "TITLE", "direction": "ASC"}],
        [{"field": "PRIORITY", "direction": "DESC"}],
        [{"field": "DUE_DATE", "direction": "ASC"}],
        [{"field": "DUE_DATE", "direction": "DESC"}, {"field": "PRIORITY", "direction": "ASC"}],
    ],
)
async def test_paging_visits_every_task_once_in_order(
    api: Api, user: Account, order_by: list[dict[str, str]] | None
) -> None:
    day = datetime(2031, 1, 1, tzinfo=UTC)
    for n in range(11):  # ties on priority and due date, some without a due date
        due = None if n % 3 == 0 else (day + timedelta(days=n % 2)).isoformat()
        await create_task(api, user, title=f"t{n:02}", priority=["LOW", "HIGH"][n % 2], dueDate=due)
    everything = await titles(api, user, first=100, orderBy=order_by)
    assert len(everything) == 11
    for size in (1, 3, 11):
        assert await collect_pages(api, user, size, orderBy=order_by) == everything


async def test_pagination_edges(api: Api, user: Account) -> None:
    empty = (await api.execute(LIST, {}, as_user=user)).ok()["tasks"]
    assert empty == {
        "totalCount": 0,
        "edges": [],
        "pageInfo": {
            "hasNextPage": False,
            "hasPreviousPage": False,
            "startCursor": None,
            "endCursor": None,
        },
    }
    for n in range(3):
        await create_task(api, user, title=f"t{n}")
    exact = (await api.execute(LIST, {"first": 3}, as_user=user)).ok()["tasks"]
    assert len(exact["edges"]) == 3
    assert exact["pageInfo"]["hasNextPage"] is False
    assert exact["totalCount"] == 3

    last_page = (await api.execute(LIST, {"last": 2}, as_user=user)).ok()["tasks"]
    assert [e["node"]["title"] for e in last_page["edges"]] == ["t1", "t0"]
    assert last_page["pageInfo"]["hasPreviousPage"] is True
    assert last_page["pageInfo"]["hasNextPage"] is False
    before = last_page["pageInfo"]["startCursor"]
    previous = (await api.execute(LIST, {"last": 2, "before": before}, as_user=user)).ok()["tasks"]
    assert [e["node"]["title"] for e in previous["edges"]] == ["t2"]
    assert previous["pageInfo"]["hasPreviousPage"] is False
    assert previous["pageInfo"]["hasNextPage"] is True

    zero = (await api.execute(LIST, {"first": 0}, as_user=user)).ok()["tasks"]
    assert zero["edges"] == []


async def test_default_page_is_20_and_more_than_100_is_refused(api: Api, user: Account) -> None:
    for n in range(21):
        await create_task(api, user, title=f"t{n}")
    assert len(await titles(api, user)) == 20
    assert len(await titles(api, user, first=100)) == 21
    for arguments in ({"first": 101}, {"last": 101}, {"first": -1}, {"first": 1, "last": 1}):
        response = await api.execute(LIST, arguments, as_user=user)
        assert response.codes == ["BAD_USER_INPUT"], arguments


async def test_a_cursor_stays_valid_when_rows_are_inserted_before_it(
    api: Api, user: Account
) -> None:
    for n in range(4):
        await create_task(api, user, title=f"t{n}")
    order = {"orderBy": [{"field": "CREATED_AT", "direction": "ASC"}]}
    first_page = (await api.execute(LIST, {"first": 2, **order}, as_user=user)).ok()["tasks"]
    cursor = first_page["pageInfo"]["endCursor"]
    await create_task(api, user, title="new")  # lands at the end of this order
    body = (await api.execute(LIST, {"first": 10, "after": cursor, **order}, as_user=user)).ok()
    assert [e["node"]["title"] for e in body["tasks"]["edges"]] == ["t2", "t3", "new"]


async def test_bad_cursors_are_bad_user_input(api: Api, user: Account) -> None:
    await create_task(api, user)
    page = (await api.execute(LIST, {"first": 1}, as_user=user)).ok()["tasks"]
    other_order = {"orderBy": [{"field": "TITLE", "direction": "ASC"}]}
    for after, extra in (
        ("garbage", {}),
        ("e30", {}),
        (page["pageInfo"]["endCursor"], other_order),
    ):
        response = await api.execute(LIST, {"after": after, **extra}, as_user=user)
        assert response.codes == ["BAD_USER_INPUT"]
        assert response.errors[0]["extensions"]["field"] == "after"


async def test_task_stats(api: Api, user: Account) -> None:
    work = await create_tag(api, user, "work")
    await create_tag(api, user, "unused")
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    await create_task(api, user, priority="HIGH", dueDate=past, tagIds=[work])
    await create_task(api, user, priority="HIGH", completed=True, dueDate=past)
    await create_task(api, user, priority="LOW", tagIds=[work])
    trashed = await create_task(api, user, priority="LOW", tagIds=[work])
    await api.execute(
        "mutation($id: ID!) { deleteTask(id: $id) { id } }", {"id": trashed["id"]}, as_user=user
    )

    stats = (
        await api.execute(
            "{ taskStats { total open completed overdue byPriority { priority count } "
            "byTag { tag { name } count } } }",
            as_user=user,
        )
    ).ok()["taskStats"]
    assert stats == {
        "total": 3,
        "open": 2,
        "completed": 1,
        "overdue": 1,
        "byPriority": [
            {"priority": "LOW", "count": 1},
            {"priority": "MEDIUM", "count": 0},
            {"priority": "HIGH", "count": 2},
        ],
        "byTag": [{"tag": {"name": "unused"}, "count": 0}, {"tag": {"name": "work"}, "count": 2}],
    }


async def test_node_refetches_a_task(api: Api, user: Account) -> None:
    task = await create_task(api, user, title="refetch")
    node = await api.execute(
        "query($id: ID!) { node(id: $id) { __typename id ... on Task { title } } }",
        {"id": task["id"]},
        as_user=user,
    )
    assert node.ok()["node"] == {"__typename": "Task", "id": task["id"], "title": "refetch"}


@pytest.mark.parametrize(
    "bad_id",
    [
        "",
        "garbage",
        "VGFzazpub3QtYS11dWlk",
        "VGFnOjAwMDAwMDAwLTAwMDAtMDAwMC0wMDAwLTAwMDAwMDAwMDAwMA==",
    ],
)
async def test_unknown_or_malformed_ids_look_up_null_and_act_not_found(
    api: Api, user: Account, bad_id: str
) -> None:
    lookup = await api.execute(
        "query($id: ID!) { task(id: $id) { id } tag(id: $id) { id } "
        "conversation(id: $id) { id } node(id: $id) { id } }",
        {"id": bad_id},
        as_user=user,
    )
    assert lookup.ok() == {"task": None, "tag": None, "conversation": None, "node": None}
    action = await api.execute(
        "mutation($id: ID!) { deleteTask(id: $id) { id } }", {"id": bad_id}, as_user=user
    )
    assert action.data == {"deleteTask": None}
    assert action.codes == ["NOT_FOUND"]


COUNTED = [
    # (document, variables, totalCount expected (None: not asked), statements after the check)
    ("{ tasks { totalCount } }", {}, 3, 1),
    ("query($c: Boolean!) { tasks { totalCount @include(if: $c) } }", {"c": True}, 3, 1),
    ("query($c: Boolean!) { tasks { totalCount @include(if: $c) } }", {"c": False}, None, 1),
    ("{ tasks { totalCount @skip(if: true) edges { cursor } } }", {}, None, 1),
    ("{ tasks { ...C } } fragment C on TaskConnection { totalCount }", {}, 3, 1),
    ("{ tasks { ... on TaskConnection { totalCount } } }", {}, 3, 1),
    ("{ tasks(filter: {completed: true}) { totalCount } }", {}, 1, 1),
    ('{ tasks(filter: {search: "zzz"}) { totalCount } }', {}, 0, 1),
    ("query($a: String) { tasks(after: $a) { totalCount } }", "past the end", 3, 2),
]


@pytest.mark.parametrize(("document", "variables", "total", "statements"), COUNTED)
async def test_a_page_counts_its_list_only_when_asked_and_alike_however_asked(
    api: Api,
    user: Account,
    document: str,
    variables: dict[str, Any] | str,
    total: int | None,
    statements: int,
) -> None:
    """`totalCount` is counted by the page's own statement when selected (through fragments,
    `@include`/`@skip` applied): the same number as a count of its own, which an empty page
    past a cursor still needs."""
    for index in range(3):
        await create_task(api, user, title=f"t{index}", completed=index == 0)
    if variables == "past the end":
        last = (await api.execute(LIST, {"first": 3}, as_user=user)).ok()["tasks"]
        variables = {"a": last["pageInfo"]["endCursor"]}
    assert isinstance(variables, dict)
    await api.execute("{ me { id } }", as_user=user)  # the user check is paid once per request
    with api.count_statements() as counter:
        data = (await api.execute(document, variables, as_user=user)).ok()["tasks"]
    assert data.get("totalCount") == total
    assert counter.count == 1 + statements, counter.statements
