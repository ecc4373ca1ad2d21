"""The per-request context: who is asking, a database handle scoped to them, fresh loaders."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import strawberry
from sqlalchemy.engine import Connection, RowMapping
from starlette.requests import Request

from graphql_api import idempotency
from graphql_api.auth import Passwords, Tokens, bearer_token
from graphql_api.db import Database, Principal
from graphql_api.errors import Unauthenticated
from graphql_api.loaders import Loaders
from graphql_api.observability import Metrics
from graphql_api.settings import Settings
from graphql_api.sql import AnyRow
from graphql_api.tracing import Tracing

if TYPE_CHECKING:
    from graphql_api.live.hub import Hub

P = ParamSpec("P")
T = TypeVar("T")


@dataclass
class Services:
    """What lives as long as the process: built once by `create_app`."""

    settings: Settings
    database: Database
    tokens: Tokens
    passwords: Passwords
    metrics: Metrics
    tracing: Tracing | None = None  # None: tracing is off
    hub: Hub | None = None  # live updates (`graphql_api.live`)


class Context:
    """Built once per request. Nothing in it comes from the client except the verified token."""

    over_websocket = False  # an operation on a WebSocket (`graphql_api.live`): it may stream

    def __init__(
        self,
        services: Services,
        principal: Principal | None,
        *,
        auth_error: Unauthenticated | None = None,
        request_id: str | None = None,
        client_address: str = "unknown",
        idempotency_key: str | None = None,
    ) -> None:
        self.services = services
        self.client_address = client_address
        self.idempotency_key = idempotency_key
        self.principal = principal
        self.auth_error = auth_error
        self.request_id = request_id or uuid.uuid4().hex
        self.db = services.database.request(principal)
        self.loaders = self._fresh_loaders()

    def _fresh_loaders(self) -> Loaders:
        services = self.services
        tracer = services.tracing.tracer if services.tracing is not None else None
        return Loaders(self.db, batch=services.settings.use_dataloaders, tracer=tracer)

    def renew_loaders(self) -> None:
        """Start with empty loaders: nothing loaded so far is reused."""
        self.loaders = self._fresh_loaders()

    @property
    def user_id(self) -> str:
        return self.db.user_id

    async def write(
        self, fn: Callable[Concatenate[Connection, str, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """A scoped write; afterwards the loaders start empty, so nothing stale is shown."""
        result = await self.db.write(fn, *args, **kwargs)
        self.renew_loaders()
        if self.services.hub is not None:  # SQLite has no NOTIFY: the hub hears it here
            self.services.hub.committed(self.user_id)
        return result

    async def create(
        self,
        info: strawberry.Info[Context, None],
        fn: Callable[..., RowMapping],
        fetch: idempotency.Fetch,
        *args: Any,
        **kwargs: Any,
    ) -> AnyRow:
        """A scoped create that honours the request's `Idempotency-Key`, if it has one."""
        if self.idempotency_key is None:
            return await self.write(fn, *args, **kwargs)
        key = idempotency.checked_key(self.idempotency_key)
        field = str(info.path.key)  # the alias, so one request can create several rows
        digest = idempotency.fingerprint(info.field_name, args, sorted(kwargs.items()))
        return await self.write(
            idempotency.create_once, key, field, digest, fn, fetch, *args, **kwargs
        )


Info = strawberry.Info[Context, None]


@asynccontextmanager
async def request_context(request: Request) -> AsyncIterator[Context]:
    """Verify the bearer token (no database involved), build the context, and at the end give
    the request's database connection back.

    A bad token does not fail the request here: public operations (sign-up, sign-in,
    introspection) still work, and anything else answers UNAUTHENTICATED with the reason.
    """
    services: Services = request.app.state.services
    principal = None
    auth_error = None
    try:
        token = bearer_token(request.headers.get("authorization"))
        if token is not None:
            principal = await services.tokens.verify(token)
    except Unauthenticated as exc:
        auth_error = exc
    context = Context(
        services,
        principal,
        auth_error=auth_error,
        request_id=getattr(request.state, "request_id", None),
        client_address=request.client.host if request.client else "unknown",
        idempotency_key=request.headers.get(idempotency.HEADER),
    )
    try:
        yield context
    finally:
        await context.db.close()
