"""What operators see: request ids in every log line, JSON logs on demand, Prometheus metrics.

Metrics per operation: requests (by outcome), latency, and SQL statements per request. The
operation label is the client's `operationName` when it is a plain identifier, and at most
MAX_OPERATION_NAMES distinct names are kept (then "other"), so clients cannot blow up the
number of series.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sqlalchemy import event
from strawberry.extensions import SchemaExtension

if TYPE_CHECKING:
    from graphql_api.live.hub import Hub

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")

MAX_OPERATION_NAMES = 200
_OPERATION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


class RequestIdFilter(logging.Filter):
    """Stamp every record with the id of the request being served (or "-")."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log collectors."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class _ServiceHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler this module installs (so that configuring twice replaces, not adds)."""


def configure_logging(level: str, fmt: str) -> None:
    """Log to stderr through one handler that knows the request id, as text or JSON."""
    handler = _ServiceHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if not isinstance(h, _ServiceHandler)]
    root.addHandler(handler)
    root.setLevel(level)


class Metrics:
    """The service's Prometheus metrics, in a registry of its own (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "graphql_requests_total",
            "GraphQL operations served, by operation, type and outcome.",
            ["operation", "type", "outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "graphql_request_duration_seconds",
            "Time to answer a GraphQL operation.",
            ["operation"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.statements = Histogram(
            "graphql_sql_statements_per_request",
            "SQL statements one GraphQL operation sent.",
            ["operation"],
            buckets=(0, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89),
            registry=self.registry,
        )
        self.websocket_closes = Counter(
            "graphql_websocket_closes_total",
            "WebSocket connections the server closed, by close code (4013: too slow, 4403: "
            "token refused or expired, ...).",
            ["code"],
            registry=self.registry,
        )
        self._names: set[str] = set()

    def watch(self, hub: Hub) -> None:
        """Live updates' gauges, read from the hub when scraped."""
        Gauge(
            "graphql_websocket_connections",
            "WebSocket connections signed in to this process.",
            registry=self.registry,
        ).set_function(lambda: hub.connections)
        Gauge(
            "graphql_subscriptions",
            "Subscriptions waiting for changes in this process.",
            registry=self.registry,
        ).set_function(lambda: hub.subscriptions)

    def operation_label(self, name: str | None) -> str:
        if not name or not _OPERATION_NAME.match(name):
            return "anonymous"
        if name not in self._names and len(self._names) >= MAX_OPERATION_NAMES:
            return "other"
        self._names.add(name)
        return name

    @staticmethod
    def count_statements(engine: sa.Engine) -> None:
        """Count each statement against the request whose connection sent it."""

        @event.listens_for(engine, "before_cursor_execute")
        def _count(conn: sa.Connection, *_: Any) -> None:
            counter = conn.info.get("statement_counter")
            if counter is not None:
                counter[0] += 1


class MetricsExtension(SchemaExtension):
    """Observe each operation: its outcome, its latency and its SQL statements."""

    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        yield
        execution = self.execution_context
        context = execution.context
        metrics: Metrics | None = getattr(getattr(context, "services", None), "metrics", None)
        if metrics is None:
            return
        label = metrics.operation_label(execution.operation_name)
        try:
            kind = execution.operation_type.value
        except RuntimeError:  # the document did not parse: no operation to speak of
            kind = "unknown"
        result = execution.result
        outcome = "error" if result is None or result.errors else "ok"
        metrics.requests.labels(label, kind, outcome).inc()
        if kind == "subscription":  # it lasts as long as its client wants: no latency to speak of
            return
        metrics.latency.labels(label).observe(time.perf_counter() - started)
        metrics.statements.labels(label).observe(context.db.statements)
