"""The ASGI application: FastAPI with the GraphQL router at /graphql and health endpoints."""

from __future__ import annotations

import gc
import logging
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from graphql_api.auth import Passwords, Tokens, check_production_settings
from graphql_api.context import Services, request_context
from graphql_api.db import Database
from graphql_api.graphiql_assets import (
    GRAPHIQL_ASSETS_PATH,
    GRAPHIQL_CDN,
    log_where_graphiql_loads_from,
)
from graphql_api.live.hub import Hub, listen_dsn
from graphql_api.live.websocket import Handshake, LiveHandler, LiveSocket
from graphql_api.observability import Metrics, configure_logging, request_id_var
from graphql_api.persisted import PersistedDocuments
from graphql_api.schema import build_schema
from graphql_api.settings import Settings, get_settings
from graphql_api.tracing import start_tracing
from graphql_api.transport import GraphQLEndpoint, TransportLimits, error_response

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

REQUEST_ID_HEADER = "x-request-id"
CORS_REQUEST_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"]
"""What a browser app may send besides the CORS-safelisted headers."""
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class ApiEndpoint(GraphQLEndpoint):
    """The GraphQL endpoint (transport rules in `graphql_api.transport`), serving GraphiQL's
    scripts from this server when they are installed locally; subscriptions over WebSocket
    (graphql-transport-ws, `graphql_api.live`)."""

    graphql_transport_ws_handler_class = LiveHandler
    websocket_adapter_class = LiveSocket

    def __init__(
        self,
        *args: Any,
        settings: Settings,
        local_graphiql_assets: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            *args,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            connection_init_wait_timeout=timedelta(
                seconds=settings.ws_connection_init_timeout_seconds
            ),
            max_subscriptions_per_connection=settings.ws_subscriptions_per_connection,
            **kwargs,
        )
        self.local_graphiql_assets = local_graphiql_assets
        self.origins = settings.cors_allow_origins or []
        pattern = settings.cors_origin_regex
        self.origin_pattern = re.compile(pattern) if pattern else None

    async def get_context(self, request: Request | WebSocket, response: Any) -> object:
        """A WebSocket's, until its `connection_init` names whom it acts for (HTTP requests
        get theirs from `request_context`)."""
        return Handshake(request.app.state.services)

    def is_websocket_origin_allowed(self, request: WebSocket, origin: str) -> bool:
        """A page on another origin may open a WebSocket where it may call the API (CORS)."""
        if "*" in self.origins or origin in self.origins:
            return True
        return self.origin_pattern is not None and self.origin_pattern.match(origin) is not None

    @property
    def graphql_ide_html(self) -> str:
        html = super().graphql_ide_html
        if self.local_graphiql_assets:
            html = html.replace(GRAPHIQL_CDN, GRAPHIQL_ASSETS_PATH)
        return html


class Api(FastAPI):
    """FastAPI, except that HTTP requests to /graphql go through the app's own middleware
    (CORS, request id, transport limits, tracing) straight to the GraphQL endpoint, past
    FastAPI's layers: its error page, exception handlers, dependency exit stack and router.
    The endpoint answers every outcome itself and needs none of them, and they cost about a
    twentieth of a request's CPU (docs/benchmarks.md). Everything else, WebSockets included,
    takes FastAPI's way."""

    graphql_endpoint: ASGIApp | None = None
    _graphql_stack: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and self.graphql_endpoint is not None
            and _route_path(scope) == "/graphql"
        ):
            if self._graphql_stack is None:  # built on first use: after every add_middleware
                self._graphql_stack = self._with_user_middleware(self.graphql_endpoint)
            scope["app"] = self  # what Starlette sets: `request.app` reaches the services
            await self._graphql_stack(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    def _with_user_middleware(self, app: ASGIApp) -> ASGIApp:
        for cls, args, kwargs in reversed(self.user_middleware):
            app = cls(app, *args, **kwargs)
        return app


def _route_path(scope: Scope) -> str:
    """The path the router would match: without the `root_path` a proxy mounts the app at."""
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        return path[len(root) :]
    return path


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
        token = request_id_var.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (REQUEST_ID_HEADER.encode(), request_id.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)


def _listen_dsn(settings: Settings) -> str | None:
    """Where the hub LISTENs for committed changes: PostgreSQL only."""
    url = settings.database_listen_url or settings.database_url
    return listen_dsn(url) if sa.make_url(url).get_backend_name() == "postgresql" else None


def create_app(
    settings: Settings | None = None, *, tracer_provider: TracerProvider | None = None
) -> FastAPI:
    """Build the application; `graphql-api serve` and the tests both start here. Tracing is on
    when the settings name an OTLP endpoint, or with `tracer_provider` (its spans go there)."""
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_format)
    check_production_settings(settings)
    tracing = start_tracing(settings, tracer_provider)
    hub = Hub(
        queue_size=settings.ws_queue_size,
        listen_dsn=_listen_dsn(settings),
        connect_timeout=settings.db_pool_timeout,
    )
    services = Services(
        settings=settings,
        database=Database(settings),
        tokens=Tokens(settings),
        passwords=Passwords(settings),
        metrics=Metrics(settings.prometheus_multiproc_dir),
        tracing=tracing,
        hub=hub,
    )
    Metrics.count_statements(services.database.engine)
    services.metrics.watch(hub)
    if tracing is not None:
        tracing.instrument_engine(services.database.engine)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # What exists now lives as long as the process: keep the cyclic GC from rescanning it,
        # and let it run less often (requests allocate many short-lived objects, few cycles).
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 20)
        yield
        await hub.close()
        services.metrics.close()
        await services.tokens.aclose()
        await services.database.dispose()
        if tracing is not None:
            await tracing.shutdown()

    app = Api(
        title="Todo GraphQL API",
        description="A multi-user GraphQL API over a todo schema. The API lives at /graphql.",
        lifespan=lifespan,
        openapi_url=None,  # the API is GraphQL; no REST schema to publish
    )
    app.state.services = services
    endpoint = ApiEndpoint(
        build_schema(settings, traced=tracing is not None),
        request_context=request_context,
        graphql_ide="graphiql" if settings.graphiql_enabled else None,
        local_graphiql_assets=settings.graphiql_assets_dir is not None,
        max_tokens=settings.max_tokens,
        persisted=PersistedDocuments(settings, services.database),
        settings=settings,
    )
    # An ASGI app as the endpoint: Starlette hands it every method; it answers 405 itself.
    app.router.routes.append(Route("/graphql", endpoint))
    app.router.routes.append(WebSocketRoute("/graphql", endpoint))
    app.graphql_endpoint = endpoint
    log_where_graphiql_loads_from(settings)
    if settings.graphiql_assets_dir is not None:
        assets = StaticFiles(directory=settings.graphiql_assets_dir, follow_symlink=True)
        app.mount(GRAPHIQL_ASSETS_PATH, assets, name="graphiql-assets")

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        """The database answers."""

        def ping(connection: sa.Connection) -> None:
            connection.execute(sa.text("SELECT 1"))

        # As a request reaches it: a pooled connection that died with a database restart is
        # replaced, not reported as "not ready".
        db = services.database.request(None)
        try:
            await db.read_public(ping)
        except Exception:  # any failure means "not ready"; the reason goes to the log
            logging.getLogger(__name__).exception("Readiness check failed")
            return JSONResponse({"status": "unavailable"}, status_code=503)
        finally:
            await db.close()
        return JSONResponse({"status": "ok"})

    if settings.metrics:

        @app.get("/metrics", include_in_schema=False)
        def metrics() -> Response:  # not async: with several workers, it reads their files
            """Prometheus metrics of this process, or of every worker (PROMETHEUS_MULTIPROC_DIR)."""
            return Response(services.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    async def graphql_shaped(request: Request, exc: Exception) -> Response:
        """Refusals by FastAPI itself (a PUT on /graphql: 405) in the shape of the others."""
        assert isinstance(exc, HTTPException)
        if not request.url.path.startswith("/graphql"):
            return await http_exception_handler(request, exc)
        response = error_response(exc.status_code, str(exc.detail))
        response.headers.update(exc.headers or {})
        return response

    app.add_exception_handler(HTTPException, graphql_shaped)
    app.add_middleware(
        TransportLimits,
        max_header_bytes=settings.max_header_bytes,
        max_header_field_bytes=settings.max_header_field_bytes,
        max_body_bytes=settings.max_body_bytes,
    )
    if tracing is not None:  # inside RequestIdMiddleware: the server span records the id
        tracing.add_middleware(app)
    app.add_middleware(RequestIdMiddleware)  # refusals above carry the id too
    app.add_middleware(  # outermost: preflights end here, and every answer is readable
        CORSMiddleware,
        allow_origins=settings.cors_allow_origins or [],
        allow_origin_regex=settings.cors_origin_regex,
        allow_methods=["GET", "POST"],
        allow_headers=CORS_REQUEST_HEADERS,
        expose_headers=[REQUEST_ID_HEADER],
        max_age=settings.cors_max_age_seconds,
    )
    return app
