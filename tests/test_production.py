"""Production mode: quieter errors, switchable introspection and GraphiQL, no start without a
way to verify tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from graphql_api.app import create_app
from graphql_api.db import create_async_request_engine
from graphql_api.settings import Settings
from tests.conftest import Backend, make_settings
from tests.helpers import Api, serve


@pytest.fixture
async def production(backend: Backend) -> AsyncIterator[Api]:
    async with serve(make_settings(backend.app_url, environment="production")) as api:
        yield api


async def test_field_suggestions_are_off_in_production(production: Api, api: Api) -> None:
    typo = "{ tsks { totalCount } }"
    quiet = await production.execute(typo)
    assert "Did you mean" not in quiet.errors[0]["message"]
    helpful = await api.execute(typo)
    assert "Did you mean 'tasks'" in helpful.errors[0]["message"]


NAME_TYPOS = [
    "{ tsks { totalCount } }",  # a field
    "{ tasks(frist: 1) { totalCount } }",  # an argument
    "{ tasks(filter: {priority: HIG}) { totalCount } }",  # an enum value
    "query($f: TaskFiltr) { tasks(filter: $f) { totalCount } }",  # a type
    "{ tasks(filter: {completd: true}) { totalCount } }",  # an input field
    'mutation { signUp(input: {emial: "a@example.com", password: "password123"}) { token } }',
]


@pytest.mark.parametrize("typo", NAME_TYPOS)
async def test_no_suggestion_of_any_kind_in_production(
    backend: Backend, api: Api, typo: str
) -> None:
    settings = make_settings(backend.app_url, environment="production", introspection=False)
    async with serve(settings) as production:
        account = await production.sign_up()
        quiet = await production.execute(typo, as_user=account)
        assert quiet.errors, quiet.body
        assert all("Did you mean" not in error["message"] for error in quiet.errors), quiet.body
    helpful = await api.execute(typo, as_user=await api.sign_up())
    assert any("Did you mean" in error["message"] for error in helpful.errors), helpful.body


async def test_a_misspelt_enum_in_a_variable_gets_no_suggestion_in_production(
    production: Api,
) -> None:
    account = await production.sign_up()
    query = "query($p: Priority) { tasks(filter: {priority: $p}) { totalCount } }"
    response = await production.execute(query, {"p": "HIG"}, as_user=account)
    assert response.codes == ["BAD_USER_INPUT"]
    assert "Did you mean" not in response.errors[0]["message"]


async def test_introspection_stays_on_by_default_in_production(production: Api) -> None:
    assert (await production.execute("{ __schema { queryType { name } } }")).ok()


async def test_introspection_can_be_switched_off(backend: Backend) -> None:
    settings = make_settings(backend.app_url, environment="production", introspection=False)
    async with serve(settings) as api:
        response = await api.execute("{ __schema { queryType { name } } }")
        assert response.data is None
        assert "introspection" in response.errors[0]["message"].lower()


async def test_graphiql_is_off_in_production_unless_asked(backend: Backend) -> None:
    html = {"Accept": "text/html"}
    async with serve(make_settings(backend.app_url, environment="production")) as api:
        assert (await api.client.get("/graphql", headers=html)).status_code == 404
    settings = make_settings(backend.app_url, environment="production", graphiql=True)
    async with serve(settings) as api:
        assert (await api.client.get("/graphql", headers=html)).status_code == 200


async def test_client_errors_stay_readable_in_production(production: Api) -> None:
    account = await production.sign_up()
    response = await production.execute(
        'mutation { createTask(input: {title: ""}) { id } }', as_user=account
    )
    assert response.codes == ["BAD_USER_INPUT"]
    assert "title" in response.errors[0]["message"]


def test_production_refuses_to_start_without_a_way_to_verify_tokens(backend: Backend) -> None:
    with pytest.raises(RuntimeError, match="JWT_SECRET or JWT_JWKS_URL"):
        create_app(make_settings(backend.app_url, environment="production", jwt_secret=None))
    create_app(  # a JWKS alone is enough
        make_settings(
            backend.app_url,
            environment="production",
            jwt_secret=None,
            jwt_jwks_url="http://127.0.0.1:9/jwks.json",
        )
    )


def test_a_libpq_url_reaches_asyncpg_with_its_tls_settings() -> None:
    """Hosted PostgreSQL URLs (Neon's) carry libpq's `sslmode` and `channel_binding`: the
    request path's asyncpg engine takes the first as `ssl` and leaves the second (libpq only)."""
    url = "postgresql+psycopg2://app@db.example.com/app?sslmode=require&channel_binding=require"
    engine = create_async_request_engine(Settings(_env_file=None, database_url=url))  # type: ignore[call-arg]
    assert engine.url.drivername == "postgresql+asyncpg"
    assert dict(engine.url.query) == {"ssl": "require"}
