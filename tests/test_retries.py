"""Lost updates and retries: `expectedUpdatedAt` refuses to overwrite a newer version, and an
`Idempotency-Key` makes a retried create return the first result instead of a duplicate."""

from __future__ import annotations

import asyncio

import pytest

from tests.helpers import Account, Api


@pytest.fixture
async def user(api: Api) -> Account:
    return await api.sign_up()


UPDATES = {
    "task": (
        'mutation { createTask(input: {title: "first"}) { id updatedAt } }',
        'mutation($id: ID!, $at: DateTime) { updateTask(id: $id, input: {title: "mine", expectedUpdatedAt: $at}) { title updatedAt } }',
    ),
    "tag": (
        'mutation { createTag(input: {name: "first"}) { id updatedAt } }',
        'mutation($id: ID!, $at: DateTime) { updateTag(id: $id, input: {name: "mine", expectedUpdatedAt: $at}) { name updatedAt } }',
    ),
    "conversation": (
        'mutation { createConversation(input: {title: "first"}) { id updatedAt } }',
        'mutation($id: ID!, $at: DateTime) { updateConversation(id: $id, input: {title: "mine", expectedUpdatedAt: $at}) { title updatedAt } }',
    ),
}


@pytest.mark.parametrize("kind", UPDATES)
async def test_an_update_based_on_a_stale_read_is_refused(
    api: Api, user: Account, kind: str
) -> None:
    create, update = UPDATES[kind]
    created = next(iter((await api.execute(create, as_user=user)).ok().values()))
    read_at = created["updatedAt"]
    first = await api.execute(update, {"id": created["id"], "at": read_at}, as_user=user)
    newer = next(iter(first.ok().values()))

    stale = await api.execute(update, {"id": created["id"], "at": read_at}, as_user=user)
    assert stale.codes == ["CONFLICT"]
    extensions = stale.errors[0]["extensions"]
    assert extensions["field"] == "expectedUpdatedAt"
    assert extensions["current"]["updatedAt"] == newer["updatedAt"]
    assert "userId" not in extensions["current"]

    fresh = await api.execute(update, {"id": created["id"], "at": newer["updatedAt"]}, as_user=user)
    assert fresh.ok()


async def test_update_me_is_guarded_too(api: Api, user: Account) -> None:
    me = (await api.execute("{ me { updatedAt } }", as_user=user)).ok()["me"]
    update = (
        'mutation($at: DateTime) { updateMe(input: {name: "x", expectedUpdatedAt: $at}) { name } }'
    )
    (await api.execute(update, {"at": me["updatedAt"]}, as_user=user)).ok()
    stale = await api.execute(update, {"at": me["updatedAt"]}, as_user=user)
    assert stale.codes == ["CONFLICT"]
    assert "passwordHash" not in stale.errors[0]["extensions"]["current"]


CREATES = {
    "createTask": 'mutation { createTask(input: {title: "once"}) { id } }',
    "createTag": 'mutation { createTag(input: {name: "once"}) { id } }',
    "createConversation": 'mutation { createConversation(input: {title: "once"}) { id } }',
}
COUNTS = "{ tasks { totalCount } tags { totalCount } conversations { totalCount } }"


async def counts(api: Api, user: Account) -> dict[str, int]:
    data = (await api.execute(COUNTS, as_user=user)).ok()
    return {name: value["totalCount"] for name, value in data.items()}


@pytest.mark.parametrize("field", CREATES)
async def test_a_retried_create_returns_the_first_result(
    api: Api, user: Account, field: str
) -> None:
    key = {"Idempotency-Key": f"retry-{field}"}
    first = await api.execute(CREATES[field], as_user=user, headers=key)
    again = await api.execute(CREATES[field], as_user=user, headers=key)
    assert again.ok() == first.ok()
    different = CREATES[field].replace("once", "twice")  # tag names must differ anyway
    other_key = await api.execute(different, as_user=user, headers={"Idempotency-Key": "x"})
    assert other_key.ok() != first.ok()
    assert sum((await counts(api, user)).values()) == 2


async def test_a_retried_message_is_posted_once(api: Api, user: Account) -> None:
    chat = (
        await api.execute("mutation { createConversation(input: {}) { id } }", as_user=user)
    ).ok()
    post = 'mutation($c: ID!) { postMessage(conversationId: $c, input: {role: USER, content: "hi"}) { id } }'
    variables = {"c": chat["createConversation"]["id"]}
    key = {"Idempotency-Key": "message-1"}
    first = await api.execute(post, variables, as_user=user, headers=key)
    again = await api.execute(post, variables, as_user=user, headers=key)
    assert again.ok() == first.ok()
    messages = await api.execute(
        "query($c: ID!) { conversation(id: $c) { messages { totalCount } } }",
        variables,
        as_user=user,
    )
    assert messages.ok()["conversation"]["messages"]["totalCount"] == 1


async def test_one_key_covers_each_aliased_create_of_a_request(api: Api, user: Account) -> None:
    two = 'mutation { a: createTask(input: {title: "a"}) { id } b: createTask(input: {title: "b"}) { id } }'
    key = {"Idempotency-Key": "batch-1"}
    first = (await api.execute(two, as_user=user, headers=key)).ok()
    again = (await api.execute(two, as_user=user, headers=key)).ok()
    assert first == again
    assert first["a"] != first["b"]
    assert (await counts(api, user))["tasks"] == 2


async def test_a_key_reused_for_a_different_request_is_a_conflict(api: Api, user: Account) -> None:
    key = {"Idempotency-Key": "reused"}
    (
        await api.execute(
            'mutation { createTask(input: {title: "one"}) { id } }', as_user=user, headers=key
        )
    ).ok()
    other = await api.execute(
        'mutation { createTask(input: {title: "two"}) { id } }', as_user=user, headers=key
    )
    assert other.codes == ["CONFLICT"]
    assert (await counts(api, user))["tasks"] == 1


async def test_keys_belong_to_their_user(api: Api, user: Account) -> None:
    other = await api.sign_up()
    key = {"Idempotency-Key": "shared-key"}
    mine = (await api.execute(CREATES["createTask"], as_user=user, headers=key)).ok()
    theirs = (await api.execute(CREATES["createTask"], as_user=other, headers=key)).ok()
    assert mine != theirs
    assert (await counts(api, other))["tasks"] == 1


async def test_concurrent_retries_create_once(api: Api, user: Account) -> None:
    key = {"Idempotency-Key": "concurrent"}
    responses = await asyncio.gather(
        *(api.execute(CREATES["createTask"], as_user=user, headers=key) for _ in range(5))
    )
    created = {r.data["createTask"]["id"] for r in responses if not r.errors}
    assert len(created) == 1
    assert all(r.codes in ([], ["CONFLICT"]) for r in responses)
    assert (await counts(api, user))["tasks"] == 1


@pytest.mark.parametrize("bad", ["", "x" * 256])
async def test_malformed_keys_are_bad_user_input(api: Api, user: Account, bad: str) -> None:
    response = await api.execute(
        CREATES["createTask"], as_user=user, headers={"Idempotency-Key": bad}
    )
    assert response.codes == ["BAD_USER_INPUT"]
    assert response.errors[0]["extensions"]["field"] == "Idempotency-Key"
