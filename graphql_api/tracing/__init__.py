"""OpenTelemetry tracing: on when an OTLP endpoint is configured, absent otherwise.

A traced request gives, all in the caller's trace when it sends a W3C `traceparent`:
- the HTTP server span (`http.ServerSpans`), which continues the caller's trace, with
  `request.id`;
- under it, one span per GraphQL operation (`query TaskList`), opened and closed by the request
  guard, so it covers parsing, validation and either executor: `graphql.operation.name` and
  `.type`, `graphql.document.hash` (`sha256:<hex>` of the text, the id trusted documents use),
  `enduser.pseudo.id` (an HMAC of the user id, never the id itself), `graphql.error.codes`,
  `request.id` (`operation.py`);
- under that, one span per dataloader batch (`dataloader tags_of_tasks`, with its size) and one
  per SQL statement (`statements.py`: SQLAlchemy's statement events, which the hot reads of
  `graphql_api.sql` send too).

Off, none of it is built: no tracer provider, no middleware, no engine listeners, the plain
guard and plain loaders, and the SDK is not even imported, so a request costs exactly what it
did (docs/benchmarks.md, "Tracing"). The SDK and the OTLP exporter are OpenTelemetry's.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
from typing import TYPE_CHECKING

from graphql_api.auth import resolve_jwt_secret
from graphql_api.settings import Settings
from graphql_api.tracing.http import ServerSpans
from graphql_api.tracing.operation import TracedRequestGuard, traced_batch
from graphql_api.tracing.statements import trace_statements

if TYPE_CHECKING:
    import sqlalchemy as sa
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import TracerProvider

__all__ = ["TracedRequestGuard", "Tracing", "start_tracing", "traced_batch"]

log = logging.getLogger(__name__)


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
        """The server span of each HTTP request; add it inside `RequestIdMiddleware`."""
        app.add_middleware(ServerSpans, tracer=self.tracer)

    def instrument_engine(self, engine: sa.Engine) -> None:
        """A span per SQL statement `engine` sends."""
        trace_statements(engine, self.tracer)

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
