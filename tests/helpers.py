"""Test helpers: the API over HTTP as a given user, and a SQL statement counter.

With `COMPILED_DIFFERENTIAL=1`, every app the suite serves gets a twin on graphql-core's
executor (COMPILED_EXECUTION off), and every query the suite sends through `Api.execute` goes
to the twin first: the two answers must be byte for byte the same. So the whole suite's
queries are a differential test of the compiled path (`make test-differential`).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import httpx
import sqlalchemy as sa
from graphql import GraphQLError, OperationType, parse
from sqlalchemy import event

from graphql_api.db import is_transaction_control
from graphql_api.limits import selected_operation

DIFFERENTIAL = os.environ.get("COMPILED_DIFFERENTIAL") == "1"
_twin_answering = [False]  # statements sent meanwhile are the twin's: not counted


@dataclass
class Response:
    status: int
    body: dict[str, Any]

    @property
    def data(self) -> Any:
        return self.body.get("data")

    @property
    def errors(self) -> list[dict[str, Any]]:
        return list(self.body.get("errors") or [])

    @property
    def codes(self) -> list[str]:
        return [error.get("extensions", {}).get("code") for error in self.errors]

    def ok(self) -> Any:
        """The data, after checking there were no errors."""
        assert self.status == 200, self.body
        assert not self.errors, self.body
        return self.data


@dataclass
class Account:
    id: str  # global ID
    email: str
    token: str


class Api:
    """The app over real HTTP (ASGI), with helpers to act as a given user."""

    def __init__(
        self, client: httpx.AsyncClient, app: Any, twin: httpx.AsyncClient | None = None
    ) -> None:
        self.client = client
        self.app = app
        self.twin = twin  # the same app on graphql-core's executor (COMPILED_DIFFERENTIAL)
        self.statements: list[str] = []

    async def execute(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        token: str | None = None,
        as_user: Account | None = None,
        headers: dict[str, str] | None = None,
        operation_name: str | None = None,
    ) -> Response:
        headers = dict(headers or {})
        token = token or (as_user.token if as_user else None)
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        payload: dict[str, Any] = {"query": query}
        if variables is not None:
            payload["variables"] = variables
        if operation_name is not None:
            payload["operationName"] = operation_name
        if self.twin is not None and _is_query(query, operation_name):
            return await self._differential(payload, headers)
        response = await self.client.post("/graphql", json=payload, headers=headers)
        return Response(response.status_code, response.json())

    async def _differential(self, payload: dict[str, Any], headers: dict[str, str]) -> Response:
        assert self.twin is not None
        if not any(name.lower() == "x-request-id" for name in headers):
            headers["X-Request-ID"] = uuid.uuid4().hex  # the same in both answers
        _twin_answering[0] = True
        try:
            expected = await self.twin.post("/graphql", json=payload, headers=headers)
        finally:
            _twin_answering[0] = False
        response = await self.client.post("/graphql", json=payload, headers=headers)
        assert (response.status_code, response.content) == (
            expected.status_code,
            expected.content,
        ), f"the compiled path answers differently: {payload}"
        return Response(response.status_code, response.json())

    async def sign_up(self, email: str | None = None, password: str = "password123") -> Account:
        email = email or f"user-{uuid.uuid4().hex[:10]}@example.com"
        data = (
            await self.execute(
                "mutation($input: SignUpInput!) { signUp(input: $input) { token user { id } } }",
                {"input": {"email": email, "password": password, "name": email.split("@")[0]}},
            )
        ).ok()["signUp"]
        return Account(id=data["user"]["id"], email=email, token=data["token"])

    def count_statements(self) -> StatementCounter:
        return StatementCounter(self.app.state.services.database.engine)


class StatementCounter:
    """Counts the SQL statements sent while active (transaction control excluded: some
    drivers send BEGIN as a statement, others don't)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.statements: list[str] = []

    def _record(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not is_transaction_control(statement) and not _twin_answering[0]:
            self.statements.append(statement)

    def __enter__(self) -> StatementCounter:
        event.listen(self.engine, "before_cursor_execute", self._record)
        return self

    def __exit__(self, *_exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._record)

    @property
    def count(self) -> int:
        return len(self.statements)


def user_tables() -> list[sa.Table]:
    """The users table and every table whose rows belong to a user."""
    from graphql_api.models import OWNED_TABLES, USERS

    return [USERS, *(model.__table__ for model in OWNED_TABLES)]  # type: ignore[attr-defined]


def owner_column(table: sa.Table) -> sa.Column[str]:
    return table.c.id if table.name == "users" else table.c.user_id


@lru_cache(maxsize=1024)  # the suite repeats its documents; parsing leaves cyclic garbage
def _is_query(query: str, operation_name: str | None) -> bool:
    try:
        operation = selected_operation(parse(query), operation_name)
    except GraphQLError:
        return True  # both must refuse it alike
    return operation is None or operation.operation is OperationType.QUERY


@asynccontextmanager
async def serve(settings: Any, **app_options: Any) -> AsyncIterator[Api]:
    """An app built from `settings` (and `create_app`'s `app_options`), running (lifespan
    included), reached over ASGI HTTP."""
    async with AsyncExitStack() as stack:
        app, client = await _running(stack, settings, **app_options)
        twin = None
        if DIFFERENTIAL:
            reference = settings.model_copy(update={"compiled_execution": False})
            # The twin serves with the app's own services (connection pool, key cache,
            # metrics): tests that count what those do see one app, as without a twin.
            _, twin = await _running(stack, reference, services=app.state.services)
        yield Api(client, app, twin)


async def _running(
    stack: AsyncExitStack, settings: Any, services: Any = None, **app_options: Any
) -> tuple[Any, httpx.AsyncClient]:
    from graphql_api.app import create_app

    app = create_app(settings, **app_options)
    await stack.enter_async_context(app.router.lifespan_context(app))
    if services is not None:
        app.state.services = services
    transport = httpx.ASGITransport(app=app)
    client = httpx.AsyncClient(transport=transport, base_url="http://test")
    return app, await stack.enter_async_context(client)
