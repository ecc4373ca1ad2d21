"""Inputs a browser or a careless client really sends: each answers BAD_USER_INPUT naming what
to fix, never INTERNAL_SERVER_ERROR."""

from __future__ import annotations

import pytest

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
