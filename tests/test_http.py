"""The HTTP surface around the schema: GraphiQL, GET queries, health, errors, the CLI."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from graphql_api.auth import Tokens
from graphql_api.cli import main
from graphql_api.settings import Settings, get_settings
from tests.helpers import Api


async def test_graphiql_is_served_to_browsers(api: Api) -> None:
    response = await api.client.get("/graphql", headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert "graphiql" in response.text.lower()


async def test_queries_work_over_get_but_mutations_do_not(api: Api) -> None:
    account = await api.sign_up()
    headers = {"Authorization": f"Bearer {account.token}"}
    query = await api.client.get("/graphql", params={"query": "{ me { id } }"}, headers=headers)
    assert query.json() == {"data": {"me": {"id": account.id}}}
    mutation = await api.client.get(
        "/graphql",
        params={"query": 'mutation { createTask(input: {title: "x"}) { id } }'},
        headers=headers,
    )
    assert mutation.status_code == 400
    assert "mutations are not allowed" in mutation.text.lower()


async def test_health_endpoints(api: Api) -> None:
    assert (await api.client.get("/healthz")).json() == {"status": "ok"}
    assert (await api.client.get("/readyz")).json() == {"status": "ok"}


async def test_requests_carry_an_id(api: Api) -> None:
    given = await api.client.get("/healthz", headers={"X-Request-ID": "trace-123"})
    assert given.headers["x-request-id"] == "trace-123"
    made_up = await api.client.get("/healthz", headers={"X-Request-ID": "bad id\n"})
    assert len(made_up.headers["x-request-id"]) == 32


async def test_unexpected_errors_are_masked_and_carry_the_request_id(
    api: Api, engine: sa.Engine
) -> None:
    account = await api.sign_up()
    with engine.begin() as conn:  # break the database under the running app
        conn.execute(sa.text("ALTER TABLE task_tags RENAME TO task_tags_hidden"))
    try:
        response = await api.execute(
            '{ tasks(filter: {tagIds: ["VGFnOjAwMDAwMDAwLTAwMDAtMDAwMC0wMDAwLTAwMDAwMDAwMDAwMA=="]}) '
            "{ totalCount } }",
            as_user=account,
            headers={"X-Request-ID": "req-42"},
        )
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE task_tags_hidden RENAME TO task_tags"))
    assert response.codes == ["INTERNAL_SERVER_ERROR"]
    error = response.errors[0]
    assert error["message"] == "Internal server error."
    assert error["extensions"]["requestId"] == "req-42"
    assert "task_tags" not in str(response.body)
    assert "Traceback" not in str(response.body)


async def test_syntax_and_validation_errors_are_readable(api: Api) -> None:
    account = await api.sign_up()
    syntax = await api.execute("{ tasks { ", as_user=account)
    assert syntax.codes == ["GRAPHQL_PARSE_FAILED"]
    unknown = await api.execute("{ tasks { bogus } }", as_user=account)
    assert unknown.codes == ["GRAPHQL_VALIDATION_FAILED"]
    assert "bogus" in unknown.errors[0]["message"]
    variables = await api.execute(
        "query($n: Int) { tasks(first: $n) { totalCount } }", {"n": "x"}, as_user=account
    )
    assert variables.codes == ["BAD_USER_INPUT"]


async def test_mutations_never_answer_with_stale_relationships(api: Api) -> None:
    account = await api.sign_up()
    tag = (
        await api.execute('mutation { createTag(input: {name: "t"}) { id } }', as_user=account)
    ).ok()
    task = (
        await api.execute('mutation { createTask(input: {title: "x"}) { id } }', as_user=account)
    ).ok()
    ids = {"t": task["createTask"]["id"], "g": tag["createTag"]["id"]}
    both = await api.execute(
        """mutation($t: ID!, $g: ID!) {
             before: updateTask(id: $t, input: {title: "y"}) { tags { id } }
             add: addTagToTask(taskId: $t, tagId: $g) { tags { id } }
             remove: removeTagFromTask(taskId: $t, tagId: $g) { tags { id } }
           }""",
        ids,
        as_user=account,
    )
    assert both.ok() == {
        "before": {"tags": []},
        "add": {"tags": [{"id": ids["g"]}]},
        "remove": {"tags": []},
    }


def test_cli_token_mints_a_working_token(
    settings: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in settings.model_dump().items():
        if value is not None and not isinstance(value, list):
            monkeypatch.setenv(name.upper(), str(value))
    get_settings.cache_clear()
    try:
        main(["token", "--user", "cli@example.com", "--create"])
        token = capsys.readouterr().out.strip()
        principal = asyncio.run(Tokens(settings).verify(token))
        main(["token", "--user", "CLI@example.com"])
        again = capsys.readouterr().out.strip()
        assert asyncio.run(Tokens(settings).verify(again)).user_id == principal.user_id
    finally:
        get_settings.cache_clear()


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        ("mutation($t: String!) { createTask(input: {title: $t}) { id } }", {"t": "a\u0000b"}),
        ('mutation { createTask(input: {title: "a\\u0000b"}) { id } }', None),
        ("query($s: String) { tasks(filter: {search: $s}) { totalCount } }", {"s": "\u0000"}),
    ],
    ids=["variable", "literal", "filter"],
)
async def test_nul_characters_are_bad_user_input(
    api: Api, query: str, variables: dict[str, str] | None
) -> None:
    """Found by fuzzing: PostgreSQL cannot store NUL, which used to be an internal error."""
    account = await api.sign_up()
    response = await api.execute(query, variables, as_user=account)
    assert response.codes == ["BAD_USER_INPUT"]
    assert "NUL" in response.errors[0]["message"]
