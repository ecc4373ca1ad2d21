"""Isolation, attacked: user B (the attacker) aims every query, mutation and ID argument of the
live schema at user A's (the victim's) rows, and must learn or change nothing.

Each attack answers NOT_FOUND (a lookup such as `task(id:)`: a plain null, as for an id that
does not exist; or lists nothing of the victim's), the victim's rows are byte-for-byte what they
were, and no response mentions any of the victim's ids or contents.
Completeness is checked against the live schema by introspection: a root field, a mutation or an
`ID` argument (input fields included) without an attack case fails the build.

Subscriptions are attacked over WebSocket, against a live server (SUBSCRIPTION_ATTACKS), and
counted in the same completeness check.

Adding a case is one line in ATTACKS. Variables name the world's rows: `victim.task`,
`mine.tag`, ...; a list of such names is a list of ids.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
import sqlalchemy as sa
from graphql import (
    GraphQLInputObjectType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
)
from sqlmodel import SQLModel

from graphql_api.relay import decode_id, encode_id
from graphql_api.schema import PUBLIC_ROOT_FIELDS, schema
from tests import live, ws
from tests.conftest import THROUGH_POOLER
from tests.helpers import Account, Api, owner_column, user_tables

pytestmark = THROUGH_POOLER  # these hold behind Neon's pooler too

SECRET = "victim-secret"
PASSWORD = "password123"  # every account's here (Api.sign_up's)


@dataclass(frozen=True)
class Attack:
    field: str
    query: str
    variables: dict[str, Any] = field(default_factory=dict)
    covers: tuple[str, ...] = ()  # the ID arguments (dotted into inputs) this attack aims at
    expect: Literal["NOT_FOUND", "NULL", "NOTHING_OF_THE_VICTIM", "UNAUTHENTICATED"] = "NOT_FOUND"
    signs_out: bool = False  # the attacker's tokens stop working: it signs in again afterwards


Q = "query"
M = "mutation"
CHANGE_PAGE = (
    "cursor hasMore changes { cursor kind id node { id "
    "... on Task { title description } ... on Message { content } } }"
)
ATTACKS: list[Attack] = [
    # --- queries ---
    Attack("me", "{ me { id email name } }", expect="NOTHING_OF_THE_VICTIM"),
    Attack(
        "node",
        f"{Q}($id: ID!) {{ node(id: $id) {{ id }} }}",
        {"id": "victim.task"},
        ("id",),
        "NULL",
    ),
    Attack(
        "node",
        f"{Q}($id: ID!) {{ node(id: $id) {{ id }} }}",
        {"id": "victim.trashed"},
        ("id",),
        "NULL",
    ),
    Attack(
        "node", f"{Q}($id: ID!) {{ node(id: $id) {{ id }} }}", {"id": "victim.tag"}, ("id",), "NULL"
    ),
    Attack(
        "node",
        f"{Q}($id: ID!) {{ node(id: $id) {{ id }} }}",
        {"id": "victim.conversation"},
        ("id",),
        "NULL",
    ),
    Attack(
        "node",
        f"{Q}($id: ID!) {{ node(id: $id) {{ id }} }}",
        {"id": "victim.message"},
        ("id",),
        "NULL",
    ),
    Attack(
        "node",
        f"{Q}($id: ID!) {{ node(id: $id) {{ id }} }}",
        {"id": "victim.user"},
        ("id",),
        "NULL",
    ),
    Attack(
        "task",
        f"{Q}($id: ID!) {{ task(id: $id) {{ id title }} }}",
        {"id": "victim.task"},
        ("id",),
        "NULL",
    ),
    Attack(
        "task",
        f"{Q}($id: ID!) {{ task(id: $id) {{ id }} }}",
        {"id": "victim.trashed"},
        ("id",),
        "NULL",
    ),
    Attack(
        "tasks",
        "{ tasks { totalCount edges { node { id title tags { id } subtasks { id } parents { id } } } } }",
        expect="NOTHING_OF_THE_VICTIM",
    ),
    Attack(
        "tasks",
        f"{Q}($t: [ID!]) {{ tasks(filter: {{tagIds: $t}}) {{ totalCount nodes {{ id }} }} }}",
        {"t": ["victim.tag"]},
        ("filter.tagIds",),
        "NOTHING_OF_THE_VICTIM",
    ),
    Attack(
        "tasks",
        f"{Q}($c: String) {{ tasks(after: $c) {{ nodes {{ id }} }} }}",
        {"c": "victim.cursor.tasks"},
        expect="NOTHING_OF_THE_VICTIM",
    ),
    Attack(
        "tasks",
        f"{Q}($c: String) {{ tasks(last: 5, before: $c) {{ nodes {{ id }} }} }}",
        {"c": "victim.cursor.tasks"},
        expect="NOTHING_OF_THE_VICTIM",
    ),
    Attack(
        "tasks",
        "{ tasks(filter: {deleted: true}) { totalCount nodes { id } } }",
        expect="NOTHING_OF_THE_VICTIM",
    ),
    Attack(
        "tag",
        f"{Q}($id: ID!) {{ tag(id: $id) {{ id name }} }}",
        {"id": "victim.tag"},
        ("id",),
        "NULL",
    ),
    Attack(
        "tags",
        "{ tags { totalCount nodes { id tasks { totalCount nodes { id } } } } }",
        expect="NOTHING_OF_THE_VICTIM",
    ),
    Attack(
        "tags",
        f"{Q}($c: String) {{ tags(after: $c) {{ nodes {{ id }} }} }}",
        {"c": "victim.cursor.tags"},
        expect="NOTHING_OF_THE_VICTIM",
    ),
    Attack(
        "tags",
        "{ tags(filter: {deleted: true}) { totalCount nodes { id name } } }",
        expect="NOTHING_OF_THE_VICTIM",
    ),
    Attack(
        "tag",
        f"{Q}($id: ID!) {{ tag(id: $id) {{ id name }} }}",
        {"id": "victim.trashed_tag"},
        ("id",),
        "NULL",
    ),
    Attack(
        "node",
        f"{Q}($id: ID!) {{ node(id: $id) {{ id }} }}",
        {"id": "victim.trashed_tag"},
        ("id",),
        "NULL",
    ),
    Attack(
        "conversation",
        f"{Q}($id: ID!) {{ conversation(id: $id) {{ id }} }}",
        {"id": "victim.conversation"},
        ("id",),
        "NULL",
    ),
    Attack(
        "conversations",
        "{ conversations { totalCount nodes { id messages(last: 5) { totalCount nodes { id content } } } } }",
        expect="NOTHING_OF_THE_VICTIM",
    ),
    Attack(
        "conversations",
        "{ conversations(filter: {deleted: true}) { totalCount nodes { id messages { nodes { content } } } } }",
        expect="NOTHING_OF_THE_VICTIM",
    ),
    Attack("changes", f"{{ changes {{ {CHANGE_PAGE} }} }}", expect="NOTHING_OF_THE_VICTIM"),
    Attack(  # a cursor is a position: in the attacker's own feed, it names the attacker's own
        "changes",
        f"{Q}($c: String) {{ changes(since: $c, first: 100) {{ {CHANGE_PAGE} }} }}",
        {"c": "victim.cursor.changes"},
        expect="NOTHING_OF_THE_VICTIM",
    ),
    Attack(
        "conversation",
        f"{Q}($id: ID!) {{ conversation(id: $id) {{ id title }} }}",
        {"id": "victim.trashed_conversation"},
        ("id",),
        "NULL",
    ),
    Attack(
        "node",
        f"{Q}($id: ID!) {{ node(id: $id) {{ id }} }}",
        {"id": "victim.trashed_conversation"},
        ("id",),
        "NULL",
    ),
    Attack(
        "taskStats",
        "{ taskStats { total open completed overdue byTag { tag { id } count } } }",
        expect="NOTHING_OF_THE_VICTIM",
    ),
    # --- public mutations ---
    Attack(
        "signIn",
        f'{M}($e: String!) {{ signIn(input: {{email: $e, password: "guess-guess"}}) {{ token }} }}',
        {"e": "victim.email"},
        expect="UNAUTHENTICATED",
    ),
    # --- task mutations ---
    Attack(
        "createTask",
        f'{M}($t: [ID!]!) {{ createTask(input: {{title: "x", tagIds: $t}}) {{ id }} }}',
        {"t": ["victim.tag"]},
        ("input.tagIds",),
    ),
    Attack(
        "createTask",
        f'{M}($p: ID) {{ createTask(input: {{title: "x", parentId: $p}}) {{ id }} }}',
        {"p": "victim.task"},
        ("input.parentId",),
    ),
    Attack(
        "updateTask",
        f'{M}($id: ID!) {{ updateTask(id: $id, input: {{title: "pwned"}}) {{ id }} }}',
        {"id": "victim.task"},
        ("id",),
    ),
    Attack(
        "deleteTask",
        f"{M}($id: ID!) {{ deleteTask(id: $id) {{ id }} }}",
        {"id": "victim.task"},
        ("id",),
    ),
    Attack(
        "restoreTask",
        f"{M}($id: ID!) {{ restoreTask(id: $id) {{ id }} }}",
        {"id": "victim.trashed"},
        ("id",),
    ),
    Attack(
        "completeTasks",
        f"{M}($ids: [ID!]!) {{ completeTasks(ids: $ids) {{ id }} }}",
        {"ids": ["mine.task", "victim.task"]},
        ("ids",),
    ),
    Attack(  # all or nothing: the attacker's own task, listed first, stays live (later attacks
        # on `mine.task` would answer CONFLICT otherwise)
        "deleteTasks",
        f"{M}($ids: [ID!]!) {{ deleteTasks(ids: $ids) {{ id }} }}",
        {"ids": ["mine.task", "victim.task", "victim.trashed"]},
        ("ids",),
    ),
    Attack(
        "setTaskTags",
        f"{M}($t: ID!, $g: [ID!]!) {{ setTaskTags(taskId: $t, tagIds: $g) {{ id }} }}",
        {"t": "victim.task", "g": []},
        ("taskId",),
    ),
    Attack(
        "setTaskTags",
        f"{M}($t: ID!, $g: [ID!]!) {{ setTaskTags(taskId: $t, tagIds: $g) {{ id }} }}",
        {"t": "mine.task", "g": ["victim.tag"]},
        ("tagIds",),
    ),
    Attack(
        "addTagToTask",
        f"{M}($t: ID!, $g: ID!) {{ addTagToTask(taskId: $t, tagId: $g) {{ id }} }}",
        {"t": "victim.task", "g": "mine.tag"},
        ("taskId",),
    ),
    Attack(
        "addTagToTask",
        f"{M}($t: ID!, $g: ID!) {{ addTagToTask(taskId: $t, tagId: $g) {{ id }} }}",
        {"t": "mine.task", "g": "victim.tag"},
        ("tagId",),
    ),
    Attack(
        "removeTagFromTask",
        f"{M}($t: ID!, $g: ID!) {{ removeTagFromTask(taskId: $t, tagId: $g) {{ id }} }}",
        {"t": "victim.task", "g": "victim.tag"},
        ("taskId", "tagId"),
    ),
    Attack(
        "removeTagFromTask",
        f"{M}($t: ID!, $g: ID!) {{ removeTagFromTask(taskId: $t, tagId: $g) {{ id }} }}",
        {"t": "mine.task", "g": "victim.tag"},
        ("tagId",),
    ),
    Attack(
        "addSubtask",
        f"{M}($p: ID!, $c: ID!) {{ addSubtask(parentId: $p, childId: $c) {{ id }} }}",
        {"p": "mine.task", "c": "victim.task"},
        ("childId",),
    ),
    Attack(
        "addSubtask",
        f"{M}($p: ID!, $c: ID!) {{ addSubtask(parentId: $p, childId: $c) {{ id }} }}",
        {"p": "victim.task", "c": "mine.task"},
        ("parentId",),
    ),
    Attack(
        "removeSubtask",
        f"{M}($p: ID!, $c: ID!) {{ removeSubtask(parentId: $p, childId: $c) {{ id }} }}",
        {"p": "victim.task", "c": "victim.child"},
        ("parentId", "childId"),
    ),
    Attack(
        "removeSubtask",
        f"{M}($p: ID!, $c: ID!) {{ removeSubtask(parentId: $p, childId: $c) {{ id }} }}",
        {"p": "mine.task", "c": "victim.child"},
        ("childId",),
    ),
    # --- tag mutations ---
    # The victim's tag name (case changed) is free for the attacker: no CONFLICT, no existence leak.
    Attack(
        "createTag",
        f'{M} {{ createTag(input: {{name: "{SECRET.upper()}-TAG"}}) {{ id name }} }}',
        expect="NOTHING_OF_THE_VICTIM",
    ),
    Attack(
        "updateTag",
        f'{M}($id: ID!) {{ updateTag(id: $id, input: {{name: "pwned"}}) {{ id }} }}',
        {"id": "victim.tag"},
        ("id",),
    ),
    Attack(
        "deleteTag",
        f"{M}($id: ID!) {{ deleteTag(id: $id) {{ id }} }}",
        {"id": "victim.tag"},
        ("id",),
    ),
    Attack(
        "restoreTag",
        f"{M}($id: ID!) {{ restoreTag(id: $id) {{ id name }} }}",
        {"id": "victim.trashed_tag"},
        ("id",),
    ),
    # --- conversation mutations ---
    Attack(
        "createConversation",
        f"{M} {{ createConversation(input: {{}}) {{ id messages {{ totalCount }} }} }}",
        expect="NOTHING_OF_THE_VICTIM",
    ),
    Attack(
        "updateConversation",
        f'{M}($id: ID!) {{ updateConversation(id: $id, input: {{title: "pwned"}}) {{ id }} }}',
        {"id": "victim.conversation"},
        ("id",),
    ),
    Attack(
        "deleteConversation",
        f"{M}($id: ID!) {{ deleteConversation(id: $id) {{ id }} }}",
        {"id": "victim.conversation"},
        ("id",),
    ),
    Attack(
        "restoreConversation",
        f"{M}($id: ID!) {{ restoreConversation(id: $id) {{ id title }} }}",
        {"id": "victim.trashed_conversation"},
        ("id",),
    ),
    Attack(
        "postMessage",
        f'{M}($c: ID!) {{ postMessage(conversationId: $c, input: {{role: USER, content: "pwned"}}) {{ id }} }}',
        {"c": "victim.conversation"},
        ("conversationId",),
    ),
    # --- the attacker's own trash: emptying it must not reach the victim's ---
    Attack("emptyTrash", f"{M} {{ emptyTrash }}", expect="NOTHING_OF_THE_VICTIM"),
    # --- the attacker's own account: must not reach the victim's ---
    Attack(
        "updateMe",
        f'{M} {{ updateMe(input: {{name: "pwned"}}) {{ id name }} }}',
        expect="NOTHING_OF_THE_VICTIM",
    ),
    Attack(
        "changePassword",
        f'{M} {{ changePassword(currentPassword: "{PASSWORD}", newPassword: "{PASSWORD}") '
        "{ token user { id email } } }",
        expect="NOTHING_OF_THE_VICTIM",
        signs_out=True,
    ),
    Attack(
        "signOutEverywhere",
        f"{M} {{ signOutEverywhere }}",
        expect="NOTHING_OF_THE_VICTIM",
        signs_out=True,
    ),
    Attack(
        "deleteMe", f'{M} {{ deleteMe(password: "{PASSWORD}") }}', expect="NOTHING_OF_THE_VICTIM"
    ),  # keep last
]

# Operations that need no token by design (DESIGN.md, Auth); `signUp` creates, never reads.
PUBLIC_FIELDS_WITHOUT_ATTACK = {"signUp"}


# --- the world under attack ------------------------------------------------------------------


@dataclass
class World:
    victim: Account
    attacker: Account
    refs: dict[str, Any]

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if isinstance(value, str) and value.split(".")[0] in {"victim", "mine"}:
            return self.refs[value]
        return value

    @property
    def victim_markers(self) -> set[str]:
        """Strings only the victim's data contains: its ids and its secret text."""
        return {
            v for k, v in self.refs.items() if k.startswith("victim.") and "cursor" not in k
        } | {SECRET}


async def _populate(api: Api, user: Account, prefix: str, label: str) -> dict[str, Any]:
    async def run(query: str, **variables: Any) -> Any:
        return (await api.execute(query, variables, as_user=user)).ok()

    tag = (await run(f'{M} {{ createTag(input: {{name: "{label}-tag"}}) {{ id }} }}'))["createTag"][
        "id"
    ]
    task = (
        await run(
            f'{M}($t: [ID!]!) {{ createTask(input: {{title: "{label}-task", description: "{label}", tagIds: $t}}) {{ id }} }}',
            t=[tag],
        )
    )["createTask"]["id"]
    child = (
        await run(
            f'{M}($p: ID) {{ createTask(input: {{title: "{label}-child", parentId: $p}}) {{ id }} }}',
            p=task,
        )
    )["createTask"]["id"]
    trashed = (await run(f'{M} {{ createTask(input: {{title: "{label}-trashed"}}) {{ id }} }}'))[
        "createTask"
    ]["id"]
    await run(f"{M}($id: ID!) {{ deleteTask(id: $id) {{ id }} }}", id=trashed)
    trashed_tag = (await run(f'{M} {{ createTag(input: {{name: "{label}-trashed"}}) {{ id }} }}'))[
        "createTag"
    ]["id"]
    await run(f"{M}($id: ID!) {{ deleteTag(id: $id) {{ id }} }}", id=trashed_tag)
    trashed_conversation = (
        await run(f'{M} {{ createConversation(input: {{title: "{label}-trashed"}}) {{ id }} }}')
    )["createConversation"]["id"]
    await run(
        f'{M}($c: ID!) {{ postMessage(conversationId: $c, input: {{role: USER, content: "{label}-trashed"}}) {{ id }} }}',
        c=trashed_conversation,
    )
    await run(f"{M}($id: ID!) {{ deleteConversation(id: $id) {{ id }} }}", id=trashed_conversation)
    conversation = (
        await run(f'{M} {{ createConversation(input: {{title: "{label}-chat"}}) {{ id }} }}')
    )["createConversation"]["id"]
    message = (
        await run(
            f'{M}($c: ID!) {{ postMessage(conversationId: $c, input: {{role: USER, content: "{label}-message"}}) {{ id }} }}',
            c=conversation,
        )
    )["postMessage"]["id"]
    tasks_cursor = (await run("{ tasks(first: 1) { pageInfo { endCursor } } }"))["tasks"][
        "pageInfo"
    ]["endCursor"]
    tags_cursor = (await run("{ tags(first: 1) { pageInfo { endCursor } } }"))["tags"]["pageInfo"][
        "endCursor"
    ]
    changes_cursor = (await run("{ changes(first: 2) { cursor } }"))["changes"]["cursor"]
    return {
        f"{prefix}.user": user.id,
        f"{prefix}.email": user.email,
        f"{prefix}.tag": tag,
        f"{prefix}.task": task,
        f"{prefix}.child": child,
        f"{prefix}.trashed": trashed,
        f"{prefix}.trashed_tag": trashed_tag,
        f"{prefix}.trashed_conversation": trashed_conversation,
        f"{prefix}.conversation": conversation,
        f"{prefix}.message": message,
        f"{prefix}.cursor.tasks": tasks_cursor,
        f"{prefix}.cursor.tags": tags_cursor,
        f"{prefix}.cursor.changes": changes_cursor,
    }


@pytest.fixture
async def world(api: Api) -> World:
    victim = await api.sign_up("victim@example.com")
    attacker = await api.sign_up("attacker@example.com")
    refs = {
        **await _populate(api, victim, "victim", SECRET),
        **await _populate(api, attacker, "mine", "attacker"),
    }
    return World(victim, attacker, refs)


def snapshot(engine: sa.Engine, user_email: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row the user owns, in a stable order."""
    users = SQLModel.metadata.tables["users"]
    with engine.connect() as conn:
        user_id = conn.execute(
            sa.select(users.c.id).where(users.c.email == user_email)
        ).scalar_one()
        rows = {}
        for table in user_tables():
            query = (
                sa.select(table)
                .where(owner_column(table) == user_id)
                .order_by(*table.primary_key.columns)
            )
            rows[table.name] = [tuple(row) for row in conn.execute(query)]
    return rows


def _sent(value: Any) -> set[str]:
    """The strings a request's variables carry."""
    if isinstance(value, list):
        return set().union(*map(_sent, value))
    return {value} if isinstance(value, str) else set()


def check_answer(attack: Attack, response: Any, world: World) -> None:
    text = json.dumps(response.body)
    # An error may name the id it is about (`completeTasks`: which one it refused): that echoes
    # what the attacker sent, and tells nothing (see test_a_foreign_id_answers_exactly_like_...).
    echoed = _sent(world.resolve(list(attack.variables.values())))
    data = json.dumps(response.body.get("data"))
    leaked = {
        marker
        for marker in world.victim_markers
        if marker in data or (marker in text and marker not in echoed)
    }
    assert not leaked, f"{attack.field} leaked {leaked}: {text}"
    if attack.expect == "NOTHING_OF_THE_VICTIM":
        assert response.errors == [], text
    elif attack.expect == "NULL":  # a lookup: null without an error, as for a missing id
        assert response.errors == [], text
        assert response.data == {attack.field: None}, text
    else:
        assert response.codes == [attack.expect], text
        assert not response.data or response.data.get(attack.field) is None, text


# --- the attacks ---------------------------------------------------------------------------


async def test_every_attack_fails_and_changes_nothing(
    api: Api, world: World, engine: sa.Engine
) -> None:
    before = snapshot(engine, world.victim.email)
    for attack in ATTACKS:
        response = await api.execute(
            attack.query,
            {name: world.resolve(value) for name, value in attack.variables.items()},
            as_user=world.attacker,
        )
        check_answer(attack, response, world)
        if attack.signs_out:
            world.attacker.token = await sign_in_again(api, world.attacker)
    assert snapshot(engine, world.victim.email) == before
    assert (await api.execute("{ me { id } }", as_user=world.victim)).ok()  # still signed in


async def sign_in_again(api: Api, account: Account) -> str:
    response = await api.execute(
        "mutation($e: String!, $p: String!) { signIn(input: {email: $e, password: $p}) { token } }",
        {"e": account.email, "p": PASSWORD},
    )
    token: str = response.ok()["signIn"]["token"]
    return token


def missing_like(world: World, value: Any, sent: dict[str, str]) -> Any:
    """`value` with each of the victim's ids replaced by an id of the same type that no one
    has; `sent` maps each id used to the name it stands for."""
    if isinstance(value, list):
        return [missing_like(world, item, sent) for item in value]
    if isinstance(value, str) and value.startswith("victim.") and value != "victim.email":
        type_name, _ = decode_id(world.refs[value])
        fresh = encode_id(type_name, uuid.uuid4())
        sent[fresh] = value
        return fresh
    return world.resolve(value)


def comparable(body: dict[str, Any], sent: dict[str, str]) -> str:
    """The answer without its request ids, and with the ids the request sent named by what
    they stand for (an error may echo the id it is about)."""
    errors = [
        {**error, "extensions": {k: v for k, v in error["extensions"].items() if k != "requestId"}}
        for error in body.get("errors") or []
    ]
    text = json.dumps({**body, "errors": errors})
    for sent_id, name in sent.items():
        text = text.replace(sent_id, f"<{name}>")
    return text


async def test_a_foreign_id_answers_exactly_like_a_missing_one(api: Api, world: World) -> None:
    """Lookups answer null and actions NOT_FOUND alike for an id that exists for someone else
    and an id that exists for no one: the same answer, message included."""
    aimed = [a for a in ATTACKS if a.expect in ("NOT_FOUND", "NULL") and a.covers]
    assert {a.field for a in aimed} >= {"node", "task", "tag", "conversation", "deleteTask"}
    victim_ids = {world.refs[name]: name for name in world.refs if name.startswith("victim.")}
    for attack in aimed:
        fresh_ids: dict[str, str] = {}
        variables = {
            name: missing_like(world, value, fresh_ids) for name, value in attack.variables.items()
        }
        missing = await api.execute(attack.query, variables, as_user=world.attacker)
        foreign = await api.execute(
            attack.query,
            {name: world.resolve(value) for name, value in attack.variables.items()},
            as_user=world.attacker,
        )
        assert comparable(foreign.body, victim_ids) == comparable(missing.body, fresh_ids), attack


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer forged.token.value", "forged-signature"],
    ids=["no-token", "garbage-token", "forged-signature"],
)
async def test_every_operation_without_a_valid_token_is_unauthenticated(
    api: Api, world: World, engine: sa.Engine, authorization: str | None
) -> None:
    if authorization == "forged-signature":  # the victim's real claims, re-signed with a guess
        header, claims, _ = world.victim.token.split(".")
        authorization = f"Bearer {header}.{claims}.c2lnbmF0dXJl"
    headers = {"Authorization": authorization} if authorization else {}
    before = snapshot(engine, world.victim.email)
    for attack in ATTACKS:
        if attack.field in PUBLIC_ROOT_FIELDS:
            continue
        response = await api.execute(
            attack.query,
            {name: world.resolve(value) for name, value in attack.variables.items()},
            headers=headers,
        )
        assert response.data is None, attack
        assert response.codes == ["UNAUTHENTICATED"], attack
    assert snapshot(engine, world.victim.email) == before


# --- completeness, by introspection ----------------------------------------------------------


def _unwrap(graphql_type: Any) -> Any:
    while isinstance(graphql_type, (GraphQLNonNull, GraphQLList)):
        graphql_type = graphql_type.of_type
    return graphql_type


def _id_paths(name: str, graphql_type: Any, seen: frozenset[str] = frozenset()) -> list[str]:
    """Dotted paths to every ID inside one argument (through input objects)."""
    named = _unwrap(graphql_type)
    if isinstance(named, GraphQLScalarType):
        return [name] if named.name == "ID" else []
    if isinstance(named, GraphQLInputObjectType) and named.name not in seen:
        return [
            path
            for field_name, input_field in named.fields.items()
            for path in _id_paths(f"{name}.{field_name}", input_field.type, seen | {named.name})
        ]
    return []


def root_fields() -> dict[str, list[str]]:
    """Every root query and mutation field, with the ID paths of its arguments."""
    fields: dict[str, list[str]] = {}
    for root in (schema._schema.query_type, schema._schema.mutation_type):
        assert isinstance(root, GraphQLObjectType)
        for field_name, root_field in root.fields.items():
            fields[field_name] = [
                path
                for arg, arg_def in root_field.args.items()
                for path in _id_paths(arg, arg_def.type)
            ]
    return fields


def subscription_fields() -> dict[str, list[str]]:
    """Every root subscription field, with the ID paths of its arguments."""
    root = schema._schema.subscription_type
    assert isinstance(root, GraphQLObjectType)
    return {
        field_name: [
            path
            for arg, arg_def in root_field.args.items()
            for path in _id_paths(arg, arg_def.type)
        ]
        for field_name, root_field in root.fields.items()
    }


def test_every_root_field_and_id_argument_has_an_attack() -> None:
    attacked = {attack.field for attack in ATTACKS}
    covered = {(attack.field, path) for attack in ATTACKS for path in attack.covers}
    missing_fields = set(root_fields()) - attacked - PUBLIC_FIELDS_WITHOUT_ATTACK
    missing_ids = sorted(
        f"{name}({path})"
        for name, paths in root_fields().items()
        for path in paths
        if (name, path) not in covered
    )
    subscribed = {attack.field for attack in SUBSCRIPTION_ATTACKS}
    missing_fields |= {f"subscription {name}" for name in set(subscription_fields()) - subscribed}
    covered_live = {
        (attack.field, path) for attack in SUBSCRIPTION_ATTACKS for path in attack.covers
    }
    missing_ids += sorted(
        f"subscription {name}({path})"
        for name, paths in subscription_fields().items()
        for path in paths
        if (name, path) not in covered_live
    )
    assert not missing_fields, f"add isolation attacks for: {sorted(missing_fields)}"
    assert not missing_ids, f"add isolation attacks aimed at: {missing_ids}"


def test_the_completeness_check_would_notice_a_new_id_argument() -> None:
    paths = _id_paths("input", schema._schema.type_map["CreateTaskInput"])
    assert paths == ["input.tagIds", "input.parentId"]


# --- subscriptions, over WebSocket to a live server -------------------------------------------

CHANGE_FIELDS = (
    "cursor kind id node { id ... on Task { title description } ... on Message { content } }"
)
POSTED = "subscription($c: ID!) { messagePosted(conversationId: $c) { id content } }"


@dataclass(frozen=True)
class SubscriptionAttack:
    field: str
    query: str
    variables: dict[str, Any] = field(default_factory=dict)
    covers: tuple[str, ...] = ()
    expect: Literal["NOT_FOUND", "NOTHING_OF_THE_VICTIM"] = "NOT_FOUND"


SUBSCRIPTION_ATTACKS: list[SubscriptionAttack] = [
    SubscriptionAttack("messagePosted", POSTED, {"c": "victim.conversation"}, ("conversationId",)),
    SubscriptionAttack(
        "messagePosted", POSTED, {"c": "victim.trashed_conversation"}, ("conversationId",)
    ),
    SubscriptionAttack(
        "changes",
        f"subscription {{ changes {{ {CHANGE_FIELDS} }} }}",
        expect="NOTHING_OF_THE_VICTIM",
    ),
    SubscriptionAttack(  # a cursor is a position: in the attacker's own feed
        "changes",
        f"subscription($c: String) {{ changes(since: $c) {{ {CHANGE_FIELDS} }} }}",
        {"c": "victim.cursor.changes"},
        expect="NOTHING_OF_THE_VICTIM",
    ),
]


@pytest.fixture
def live_api(backend: Any, tmp_path: Any) -> Iterator[str]:
    """The API under uvicorn on the same database as `api`, for WebSocket clients."""
    env = {name.upper(): str(value) for name, value in backend.app_settings.items()}
    with live.running_server(backend.app_url, tmp_path / "server.log", **env) as base:
        yield base


async def test_every_subscription_attack_fails(world: World, live_api: str) -> None:
    """A subscription aimed at the victim's conversation answers NOT_FOUND, as for one that
    does not exist; the attacker's change feed, live while the victim writes, carries only the
    attacker's own changes (read up to a change the attacker makes after the victim's: the
    victim's, committed before it, would have come first)."""
    for n, attack in enumerate(SUBSCRIPTION_ATTACKS):
        variables = {name: world.resolve(value) for name, value in attack.variables.items()}
        async with ws.signed_in(live_api, world.attacker.token) as socket:
            await ws.until_subscriptions(live_api, 0)
            await socket.subscribe("1", attack.query, variables)
            if attack.expect == "NOT_FOUND":
                answer = await socket.message("1")
                seen = [answer]
                assert answer["type"] == "error", answer
                assert [e["extensions"]["code"] for e in answer["payload"]] == ["NOT_FOUND"]
                missing: dict[str, str] = {}
                fresh = {k: missing_like(world, v, missing) for k, v in attack.variables.items()}
                await socket.subscribe("2", attack.query, fresh)
                assert _without_request_ids(await socket.message("2")) == {
                    **_without_request_ids(answer),
                    "id": "2",
                }
            else:
                await ws.until_subscriptions(live_api, 1)
                await _victim_writes(live_api, world, n)
                marker = f"attacker-{n}"
                await ws.create_task(live_api, world.attacker.token, marker)
                seen = []
                while (
                    not seen
                    or (seen[-1]["payload"]["data"]["changes"]["node"] or {}).get("title") != marker
                ):
                    seen.append(await socket.message("1"))
                    assert seen[-1]["type"] == "next", seen[-1]
        text = json.dumps(seen)
        leaked = {marker for marker in world.victim_markers if marker in text}
        assert not leaked, f"{attack.field} leaked {leaked}: {text}"


async def _victim_writes(base: str, world: World, n: int) -> None:
    token = world.victim.token
    await ws.create_task(base, token, f"{SECRET}-{n}")
    await ws.execute(
        base,
        "mutation($c: ID!, $m: String!) { postMessage(conversationId: $c, "
        "input: {role: USER, content: $m}) { id } }",
        {"c": world.refs["victim.conversation"], "m": f"{SECRET}-{n}"},
        token,
    )


def _without_request_ids(message: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(message).replace(_request_id(message), "<request id>"))


def _request_id(message: dict[str, Any]) -> str:
    return str(message["payload"][0]["extensions"]["requestId"])


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer forged.token.value", "forged-signature"],
    ids=["no-token", "garbage-token", "forged-signature"],
)
async def test_a_websocket_without_a_valid_token_gets_no_connection(
    world: World, live_api: str, authorization: str | None
) -> None:
    if authorization == "forged-signature":
        header, claims, _ = world.victim.token.split(".")
        authorization = f"Bearer {header}.{claims}.c2lnbmF0dXJl"
    payload = {"Authorization": authorization} if authorization else {}
    async with ws.connect(live_api) as socket:
        with pytest.raises(ws.Closed) as refused:
            await socket.init(payload)
    assert refused.value.code == (4401 if authorization is None else 4403)
