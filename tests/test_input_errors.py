"""Inputs a browser or a careless client really sends: each answers BAD_USER_INPUT naming what
to fix, never INTERNAL_SERVER_ERROR."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from graphql import GraphQLInputObjectType, get_named_type, is_non_null_type

from graphql_api.errors import BadUserInput, camel_case
from graphql_api.models import TaskFields
from graphql_api.schema import schema
from graphql_api.validation import accepts_null, validate
from tests.helpers import Account, Api

NO_TIME_ZONE = ["2030-01-01T09:00", "2030-01-01", "2030-01-01T09:00:00.123"]
OVERFLOWING = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"]


@pytest.fixture
async def user(api: Api) -> Account:
    return await api.sign_up()


@pytest.mark.parametrize("value", NO_TIME_ZONE + OVERFLOWING + ["soon", "2030-13-01T00:00Z"])
async def test_a_bad_datetime_is_bad_user_input_everywhere(
    api: Api, user: Account, value: str
) -> None:
    created = await api.execute('mutation { createTask(input: {title: "t"}) { id } }', as_user=user)
    task_id = created.ok()["createTask"]["id"]
    attempts = [
        (
            'mutation($d: DateTime) { createTask(input: {title: "t", dueDate: $d}) { id } }',
            {"d": value},
        ),
        (
            "mutation($id: ID!, $d: DateTime) { updateTask(id: $id, input: {dueDate: $d}) { id } }",
            {"id": task_id, "d": value},
        ),
        (
            "query($d: DateTime) { tasks(filter: {dueBefore: $d}) { totalCount } }",
            {"d": value},
        ),
        (f'query {{ tasks(filter: {{dueAfter: "{value}"}}) {{ totalCount }} }}', None),
    ]
    for document, variables in attempts:
        response = await api.execute(document, variables, as_user=user)
        assert response.data is None, response.body
        assert response.codes == ["BAD_USER_INPUT"], response.body
        message = response.errors[0]["message"]
        if "$d" not in document:  # a literal: its field named and located
            assert response.errors[0]["extensions"]["field"] == "dueAfter"
            assert response.errors[0]["locations"], response.body
        assert value in message, message
        assert "2030-01-01T09:00:00Z" in message, message


async def test_a_bad_datetime_deep_in_an_input_variable_names_its_field(
    api: Api, user: Account
) -> None:
    response = await api.execute(
        "mutation($i: CreateTaskInput!) { createTask(input: $i) { id } }",
        {"i": {"title": "t", "dueDate": "2030-01-01T09:00"}},
        as_user=user,
    )
    assert response.codes == ["BAD_USER_INPUT"]
    assert response.errors[0]["extensions"]["field"] == "dueDate"


async def test_a_datetime_with_an_offset_is_stored_in_utc(api: Api, user: Account) -> None:
    response = await api.execute(
        'mutation { createTask(input: {title: "t", dueDate: "2030-01-01T09:00:00+02:00"}) '
        "{ dueDate } }",
        as_user=user,
    )
    assert response.ok()["createTask"]["dueDate"] == "2030-01-01T07:00:00+00:00"


async def test_a_search_longer_than_any_text_is_refused(api: Api, user: Account) -> None:
    query = "query($s: String) { tasks(filter: {search: $s}) { totalCount } }"
    response = await api.execute(query, {"s": "%" * 60_000}, as_user=user)
    assert response.codes == ["BAD_USER_INPUT"]
    assert response.errors[0]["extensions"]["field"] == "search"
    assert (await api.execute(query, {"s": "%_" * 500}, as_user=user)).ok() == {
        "tasks": {"totalCount": 0}
    }


async def test_a_huge_integer_literal_is_a_validation_error(api: Api, user: Account) -> None:
    response = await api.execute(
        "{ tasks(first: " + "9" * 5000 + ") { totalCount } }", as_user=user
    )
    assert response.codes == ["GRAPHQL_VALIDATION_FAILED"]


# --- null, and wrongly typed values, in every mutation's input ------------------------------


@dataclass(frozen=True)
class EnumValue:
    """An enum value: bare in a document literal, a string in variables."""

    name: str


@dataclass(frozen=True)
class ValidCall:
    """A call of a mutation that succeeds (or fails only later): its input argument's name and
    value, and its other arguments (names of `refs` stand for the ids they name)."""

    input: dict[str, Any]
    arguments: dict[str, str] = field(default_factory=dict)
    input_name: str = "input"


VALID_CALLS: dict[str, ValidCall] = {
    "signUp": ValidCall({"email": "null-check@example.com", "password": "password123"}),
    "signIn": ValidCall({"email": "null-check@example.com", "password": "password123"}),
    "updateMe": ValidCall({"name": "n"}),
    "createTask": ValidCall({"title": "t", "tagIds": []}),
    "updateTask": ValidCall({"title": "t"}, {"id": "task"}),
    "createTag": ValidCall({"name": "n"}),
    "updateTag": ValidCall({"name": "n"}, {"id": "tag"}),
    "createConversation": ValidCall({"title": "t"}),
    "updateConversation": ValidCall({"title": "t"}, {"id": "conversation"}),
    "postMessage": ValidCall(
        {"role": EnumValue("USER"), "content": "c"}, {"conversationId": "conversation"}
    ),
}


def mutation_inputs() -> dict[str, tuple[str, GraphQLInputObjectType]]:
    """Every mutation with an input object argument: (its argument name, its input type)."""
    mutation = schema._schema.mutation_type
    assert mutation is not None
    found = {}
    for name, mutation_field in mutation.fields.items():
        for arg_name, arg in mutation_field.args.items():
            named = get_named_type(arg.type)
            if isinstance(named, GraphQLInputObjectType):
                found[name] = (arg_name, named)
    return found


def refuses_null(input_type: GraphQLInputObjectType, name: str) -> bool:
    """Whether an input field takes no null: non-null in GraphQL, or a column that cannot be
    null in the model an (optional) field of a patch input mirrors."""
    if is_non_null_type(input_type.fields[name].type):
        return True
    definition = schema.get_type_by_name(input_type.name)
    model = getattr(getattr(definition, "origin", None), "__mirrored_model__", None)
    columns = {
        camel_case(column): info for column, info in (model.model_fields if model else {}).items()
    }
    return name in columns and not accepts_null(columns[name])


NULL_CASES = [
    (mutation, input_field)
    for mutation, (_, input_type) in mutation_inputs().items()
    for input_field in input_type.fields
    if refuses_null(input_type, input_field)
]


def test_every_mutation_input_has_a_valid_call() -> None:
    assert set(mutation_inputs()) == set(VALID_CALLS)
    assert ("updateTask", "title") in NULL_CASES
    assert ("createTask", "title") in NULL_CASES


def literal(value: Any) -> str:
    if isinstance(value, EnumValue):
        return value.name
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(literal(item) for item in value) + "]"
    return json.dumps(value)


def variable(value: Any) -> Any:
    if isinstance(value, EnumValue):
        return value.name
    if isinstance(value, dict):
        return {k: variable(v) for k, v in value.items()}
    return value


@pytest.fixture
async def refs(api: Api, user: Account) -> dict[str, str]:
    async def new(document: str) -> str:
        data = (await api.execute(document, as_user=user)).ok()
        return str(next(iter(data.values()))["id"])

    return {
        "task": await new('mutation { createTask(input: {title: "t"}) { id } }'),
        "tag": await new('mutation { createTag(input: {name: "t"}) { id } }'),
        "conversation": await new("mutation { createConversation(input: {}) { id } }"),
    }


@pytest.mark.parametrize(("mutation", "input_field"), NULL_CASES, ids=lambda v: v)
async def test_null_in_every_input_field_names_the_field(
    api: Api, user: Account, refs: dict[str, str], mutation: str, input_field: str
) -> None:
    """`title: null` answers "`title`: ... null", in GraphQL's words, naming the field in
    `extensions.field`: as a literal in the document and as a variable's value alike."""
    call = VALID_CALLS[mutation]
    arg_name, input_type = mutation_inputs()[mutation]
    values = {**call.input, input_field: None}
    ids = {name: refs[ref] for name, ref in call.arguments.items()}
    id_args = "".join(f"{name}: {json.dumps(value)}, " for name, value in ids.items())
    as_literal = (
        f"mutation {{ {mutation}({id_args}{arg_name}: {literal(values)}) {{ __typename }} }}"
    )
    as_variable = f"mutation($v: {input_type.name}!) {{ {mutation}({id_args}{arg_name}: $v) {{ __typename }} }}"
    for document, variables in ((as_literal, None), (as_variable, {"v": variable(values)})):
        response = await api.execute(document, variables, as_user=user)
        assert len(response.errors) == 1, response.body
        error = response.errors[0]
        assert error["extensions"]["field"] == input_field, response.body
        assert error["extensions"]["code"] in ("BAD_USER_INPUT", "GRAPHQL_VALIDATION_FAILED")
        message = error["message"]
        assert "null" in message, message
        assert "None" not in message, message
        assert "Input should" not in message, message
        if response.data is not None:  # it reached the resolver: only the mutation is null
            assert response.data == {mutation: None}, response.body


async def test_null_for_a_required_argument_names_it(api: Api, user: Account) -> None:
    response = await api.execute("mutation { completeTasks(ids: null) { id } }", as_user=user)
    assert response.codes == ["GRAPHQL_VALIDATION_FAILED"]
    assert response.errors[0]["extensions"]["field"] == "ids"
    assert response.errors[0]["message"].startswith("`ids`: ")
    assert "not to be null" in response.errors[0]["message"]


async def test_a_missing_or_unknown_input_field_is_named(api: Api, user: Account) -> None:
    create = "mutation($i: CreateTaskInput!) { createTask(input: $i) { id } }"
    for document, variables, named in (
        ("mutation { createTask(input: {}) { id } }", None, "title"),
        (create, {"i": {}}, "title"),
        ('mutation { createTask(input: {title: "t", titel: "t"}) { id } }', None, "titel"),
        (create, {"i": {"title": "t", "titel": "t"}}, "titel"),
    ):
        response = await api.execute(document, variables, as_user=user)
        assert [e["extensions"].get("field") for e in response.errors] == [named], response.body


@pytest.mark.parametrize(
    ("values", "field_name", "reason"),
    [
        ({"title": None}, "title", "may not be null"),
        ({}, "title", "is required"),
        ({"title": 5}, "title", "must be a String"),
        ({"title": "t", "completed": "maybe"}, "completed", "must be a Boolean"),
        ({"title": "t", "priority": "urgent"}, "priority", "must be one of LOW, MEDIUM, HIGH"),
        ({"title": "t", "due_date": "soon"}, "dueDate", "must be a DateTime"),
        ({"title": "x" * 201}, "title", "String should have at most 200 characters"),
    ],
)
def test_what_reaches_the_models_is_refused_in_graphql_terms(
    values: dict[str, Any], field_name: str, reason: str
) -> None:
    """Values GraphQL cannot send but other callers of the data layer (seeds, scripts) can:
    still the GraphQL field's name and GraphQL's words, never Pydantic's."""
    with pytest.raises(BadUserInput) as refused:
        validate(TaskFields, values)
    assert refused.value.extensions["field"] == field_name
    assert refused.value.message.startswith(f"`{field_name}`: {reason}")
