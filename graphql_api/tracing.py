"""OpenTelemetry tracing: on when an OTLP endpoint is configured, absent otherwise.

A traced request gives, all in the caller's trace when it sends a W3C `traceparent`:
- the HTTP server span (OpenTelemetry's ASGI middleware), which continues the caller's trace,
  with `request.id`;
- under it, one span per GraphQL operation (`query TaskList`), opened and closed by the request
  guard, so it covers parsing, validation and either executor: `graphql.operation.name` and
  `.type`, `graphql.document.hash` (`sha256:<hex>` of the text, the id trusted documents use),
  `enduser.pseudo.id` (an HMAC of the user id, never the id itself), `graphql.error.codes`,
  `request.id`;
- under that, one span per dataloader batch (`dataloader tags_of_tasks`, with its size) and one
  per SQL statement (the SQLAlchemy instrumentation's listeners on the request engine; the hot
  reads of `graphql_api.sql` dispatch the same events as Core).

Off, none of it is built: no tracer provider, no middleware, no engine listeners, the plain
guard and plain loaders, so a request costs exactly what it did (docs/benchmarks.md, "Tracing").
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode, Tracer

from graphql_api.auth import resolve_jwt_secret
from graphql_api.guard import RequestGuard
from graphql_api.settings import Settings

if TYPE_CHECKING:
    import sqlalchemy as sa
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import TracerProvider
    from strawberry.types import ExecutionContext

log = logging.getLogger(__name__)

K = TypeVar("K")
V = TypeVar("V")

SERVER_FAULTS = frozenset({"INTERNAL_SERVER_ERROR", "SERVICE_UNAVAILABLE"})
"""Codes that mark an operation's span as failed; the other codes are the client's doing."""
UNTRACED_PATHS = r"/(healthz|readyz|metrics)$"
"""Probes and scrapes: frequent, and nothing to learn from their traces."""
OPERATION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
"""Operation names kept in span names and attributes (the client chooses them)."""
REQUEST_ID = "request.id"


class Tracing:
    """The tracer of one app, and the instrumentation it installs."""

    def __init__(self, provider: TracerProvider, user_id_key: bytes, *, owned: bool) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("graphql_api")
        self._user_id_key = user_id_key
        self._owned = owned  # built here from the settings (not handed in): shut down here

    def pseudonym(self, user_id: str) -> str:
        """What spans carry instead of the user id: stable for one key, not reversible."""
        return hmac.new(self._user_id_key, user_id.encode(), hashlib.sha256).hexdigest()[:32]

    def add_middleware(self, app: FastAPI) -> None:
        """The server span of each HTTP request (added inside `RequestIdMiddleware`, whose id
        it records); `traceparent` is read by the global propagator (OTEL_PROPAGATORS)."""
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
        from opentelemetry.metrics import NoOpMeterProvider

        app.add_middleware(
            OpenTelemetryMiddleware,
            excluded_urls=UNTRACED_PATHS,
            server_request_hook=_record_request_id,
            tracer_provider=self.provider,
            meter_provider=NoOpMeterProvider(),  # metrics are Prometheus' (observability.py)
            exclude_spans=["receive", "send"],  # a span per ASGI message says nothing here
        )

    def instrument_engine(self, engine: sa.Engine) -> None:
        """A span per SQL statement on `engine`: the SQLAlchemy instrumentation's listeners,
        on this engine only (its `instrument()` would patch SQLAlchemy for the whole process)."""
        from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
        from opentelemetry.metrics import NoOpMeterProvider

        meter = NoOpMeterProvider().get_meter(__name__)
        EngineTracer(  # type: ignore[no-untyped-call]
            self.provider.get_tracer("opentelemetry.instrumentation.sqlalchemy"),
            engine,
            meter.create_up_down_counter("db.client.connections.usage"),
        )

    async def shutdown(self) -> None:
        """Send the spans still queued, off the event loop."""
        if self._owned:
            await asyncio.to_thread(self.provider.shutdown)


def start_tracing(settings: Settings, provider: TracerProvider | None = None) -> Tracing | None:
    """The app's tracing: with `provider` (tests: an in-memory exporter's), or exporting over
    OTLP when the settings name an endpoint; None when tracing is off."""
    owned = provider is None
    if provider is None:
        if not settings.tracing_enabled:
            return None
        provider = _exporting_provider(settings)
    return Tracing(provider, _user_id_key(settings), owned=owned)


def _exporting_provider(settings: Settings) -> TracerProvider:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    given = {SERVICE_NAME: settings.otel_service_name} if settings.otel_service_name else {}
    resource = Resource.create(given)  # with OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "graphql-api"}))
    # The sampler (OTEL_TRACES_SAMPLER) and the batching (OTEL_BSP_*) come from the environment.
    provider = TracerProvider(resource=resource)
    exporter = OTLPSpanExporter(endpoint=settings.otlp_traces_url)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    log.info("Tracing on: spans go to %s over OTLP/HTTP", settings.otlp_traces_url)
    return provider


def _user_id_key(settings: Settings) -> bytes:
    if settings.tracing_user_id_key:
        return settings.tracing_user_id_key.encode()
    secret = resolve_jwt_secret(settings)
    if secret:  # shared by every replica already; the key derived from it reveals nothing of it
        return hmac.new(secret.encode(), b"graphql-api tracing user ids", hashlib.sha256).digest()
    log.warning(
        "Tracing: no TRACING_USER_ID_KEY (nor JWT_SECRET): user pseudonyms in spans differ "
        "from one process to the next"
    )
    return secrets.token_bytes(32)


def _record_request_id(span: Span, scope: dict[str, Any]) -> None:
    request_id = scope.get("state", {}).get("request_id")
    if request_id is not None and span.is_recording():
        span.set_attribute(REQUEST_ID, request_id)


class TracedRequestGuard(RequestGuard):
    """The request guard of a traced app: also the span of the whole operation. It must come
    before the error formatter among the schema's extensions, so that it ends last, once every
    error has its code."""

    def on_operation(self) -> Iterator[None]:
        execution = self.execution_context
        tracing: Tracing | None = getattr(
            getattr(execution.context, "services", None), "tracing", None
        )
        if tracing is None:
            yield
            return
        span = tracing.tracer.start_span("GraphQL operation")
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            yield
        finally:
            otel_context.detach(token)
            if span.is_recording():
                _describe(span, execution, tracing)
            span.end()


def _describe(span: Span, execution: ExecutionContext, tracing: Tracing) -> None:
    context = execution.context
    try:
        kind: str | None = execution.operation_type.value
    except RuntimeError:  # no document (a syntax error), or no such operation
        kind = None
    name = execution.operation_name
    name = name if name and OPERATION_NAME.match(name) else None
    span.update_name(" ".join(part for part in (kind, name) if part) or "GraphQL operation")
    attributes: dict[str, Any] = {REQUEST_ID: context.request_id}
    if kind is not None:
        attributes["graphql.operation.type"] = kind
    if name is not None:
        attributes["graphql.operation.name"] = name
    if execution.query is not None:
        digest = hashlib.sha256(execution.query.encode()).hexdigest()
        attributes["graphql.document.hash"] = f"sha256:{digest}"
    if context.principal is not None:
        attributes["enduser.pseudo.id"] = tracing.pseudonym(context.principal.user_id)
    result = execution.result
    errors = (result.errors if result is not None else None) or []
    codes = sorted({str(code) for e in errors if (code := (e.extensions or {}).get("code"))})
    if codes:
        attributes["graphql.error.codes"] = codes
        if faults := SERVER_FAULTS.intersection(codes):
            span.set_status(Status(StatusCode.ERROR, ", ".join(sorted(faults))))
    span.set_attributes(attributes)


def traced_batch(
    tracer: Tracer, name: str, load: Callable[[list[K]], Coroutine[Any, Any, list[V]]]
) -> Callable[[list[K]], Coroutine[Any, Any, list[V]]]:
    """`load` (a dataloader's batch function) in a span of its own: its statements nest in it."""
    span_name = f"dataloader {name}"

    async def load_in_span(keys: list[K]) -> list[V]:
        attributes: dict[str, str | int] = {
            "dataloader.name": name,
            "dataloader.batch.size": len(keys),
        }
        with tracer.start_as_current_span(span_name, attributes=attributes):
            return await load(keys)

    return load_in_span
