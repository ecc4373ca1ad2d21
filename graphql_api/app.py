"""The ASGI application: FastAPI with the GraphQL router at /graphql and health endpoints."""

from __future__ import annotations

import gc
import logging
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.fastapi import GraphQLRouter

from graphql_api.auth import Passwords, Tokens, check_production_settings
from graphql_api.context import Services, get_context
from graphql_api.db import Database
from graphql_api.schema import build_schema
from graphql_api.settings import Settings, get_settings

REQUEST_ID_HEADER = "x-request-id"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class ApiRouter(GraphQLRouter[object, None]):
    """The GraphQL endpoint, answering with orjson (several times faster than `json`)."""

    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)


class RequestIdMiddleware:
    """Tag each request with an id (the caller's `X-Request-ID` if sane), echoed in the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1")
        request_id = given if _VALID_REQUEST_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (REQUEST_ID_HEADER.encode(), request_id.encode()),
                ]
            await send(message)

        await self.app(scope, receive, send_with_id)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application; `graphql-api serve` and the tests both start here."""
    settings = settings or get_settings()
    logging.basicConfig(level=settings.log_level)
    check_production_settings(settings)
    services = Services(
        settings=settings,
        database=Database(settings),
        tokens=Tokens(settings),
        passwords=Passwords(settings),
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # What exists now lives as long as the process: keep the cyclic GC from rescanning it,
        # and let it run less often (requests allocate many short-lived objects, few cycles).
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 20)
        yield
        await services.tokens.aclose()
        services.database.dispose()

    app = FastAPI(
        title="Todo GraphQL API",
        description="A multi-user GraphQL API over a todo schema. The API lives at /graphql.",
        lifespan=lifespan,
        max_body_size=settings.max_body_bytes,
        openapi_url=None,  # the API is GraphQL; no REST schema to publish
    )
    app.state.services = services
    router = ApiRouter(
        build_schema(settings),
        context_getter=get_context,
        graphql_ide="graphiql" if settings.graphiql_enabled else None,
    )
    app.include_router(router, prefix="/graphql")

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        """The database answers."""

        def ping() -> None:
            with services.database.engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))

        try:
            await services.database.run(ping)
        except Exception:  # any failure means "not ready"; the reason goes to the log
            logging.getLogger(__name__).exception("Readiness check failed")
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok"})

    app.add_middleware(RequestIdMiddleware)
    return app
