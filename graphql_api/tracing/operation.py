"""The GraphQL side of tracing: a span per operation, opened by the request guard, and a span
per dataloader batch."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode, Tracer

from graphql_api.guard import RequestGuard

if TYPE_CHECKING:
    from strawberry.types import ExecutionContext

    from graphql_api.tracing import Tracing

K = TypeVar("K")
V = TypeVar("V")

SERVER_FAULTS = frozenset({"INTERNAL_SERVER_ERROR", "SERVICE_UNAVAILABLE"})
"""Codes that mark an operation's span as failed; the other codes are the client's doing."""
OPERATION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
"""Operation names kept in span names and attributes (the client chooses them)."""
REQUEST_ID = "request.id"


class TracedRequestGuard(RequestGuard):
    """The request guard of a traced app: also the span of the whole operation (parsing,
    validation, either executor). It must come before the error formatter among the schema's
    extensions, so that it ends last, once every error has its code."""

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
