"""A span per SQL statement, from SQLAlchemy's statement events on the request engine.

Core sends `before_cursor_execute`, then `after_cursor_execute` or `handle_error`; the hot reads
of `graphql_api.sql` send the same, with an execution context of their own, so every statement
of a request is a span, ended when it succeeds or fails.

Written here rather than taken from opentelemetry-instrumentation-sqlalchemy, which costs 60 µs
of CPU per statement against 25 here (22 against 7 when the request is not sampled: it builds
its attributes before it knows; docs/benchmarks.md, "Tracing"), and which puts the driver's
error message in the span's status: PostgreSQL's messages can quote the values of a row
(`Key (email)=(...) already exists`). Here a failure is named by its class and SQLSTATE only.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from sqlalchemy import event
from sqlalchemy.engine import ExceptionContext

SPAN = "_tracing_span"
"""Where a statement's span waits for its end, on the statement's execution context."""


def trace_statements(engine: sa.Engine, tracer: Tracer) -> None:
    """Listen on `engine`: each statement it sends becomes a client span."""
    url = engine.url
    system = "postgresql" if engine.dialect.name == "postgresql" else engine.dialect.name
    fixed: dict[str, str | int] = {"db.system.name": system}
    if url.database:
        fixed["db.namespace"] = url.database
    if url.host:
        fixed["server.address"] = url.host
    if url.port:
        fixed["server.port"] = url.port

    def before(
        _conn: Any, _cursor: Any, statement: str, _params: Any, context: Any, _many: bool
    ) -> None:
        operation = statement.lstrip()[:16].split(None, 1)[0].upper() if statement else system
        span = tracer.start_span(operation, kind=SpanKind.CLIENT)
        if span.is_recording():
            span.set_attributes(fixed)
            span.set_attribute("db.operation.name", operation)
            span.set_attribute("db.query.text", statement)  # placeholders, never the values
        if context is None:  # nowhere to keep it until the end: a point in time, then
            span.end()
        else:
            setattr(context, SPAN, span)

    def after(
        _conn: Any, _cursor: Any, _statement: str, _params: Any, context: Any, *_: Any
    ) -> None:
        span = getattr(context, SPAN, None)
        if span is not None:
            span.end()

    def failed(failure: ExceptionContext) -> None:
        span = getattr(failure.execution_context, SPAN, None)
        if span is None:
            return
        original = failure.original_exception
        code = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
        if span.is_recording():
            if code:
                span.set_attribute("db.response.status_code", str(code))
            span.set_attribute("error.type", type(original).__name__)
            span.set_status(Status(StatusCode.ERROR, type(original).__name__))
        span.end()

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    event.listen(engine, "handle_error", failed)
