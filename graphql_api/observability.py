"""What operators see: request ids in every log line, JSON logs on demand, Prometheus metrics.

Metrics per operation: requests (by outcome), latency, and SQL statements per request; and the
operations in progress. The operation label is the client's `operationName` when it is a plain
identifier, and at most MAX_OPERATION_NAMES distinct names are kept (then "other"), so clients
cannot blow up the number of series.

Several worker processes (PROMETHEUS_MULTIPROC_DIR): prometheus-client then keeps every value in
a file of the directory per process, and /metrics adds up the files of every process, live or
dead, so a scrape sees the whole server whichever worker answers it. Counters and histograms of
dead workers stay in the sum (they are totals); the in-progress gauge counts live workers only,
so a worker marks itself dead when it stops, and one that starts marks dead those that vanished
without stopping (killed, out of memory).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from sqlalchemy import event
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionContext

log = logging.getLogger(__name__)

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
    """The service's Prometheus metrics, in a registry of its own (one per app); with
    `multiprocess_dir`, the metrics of every worker process that writes there."""

    def __init__(self, multiprocess_dir: Path | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry()
        self.exposed = self.registry
        _check_where_values_go(multiprocess_dir)
        if multiprocess_dir is not None:
            _mark_vanished_dead(multiprocess_dir)
            self.exposed = CollectorRegistry()
            path = str(multiprocess_dir)  # (prometheus-client leaves the collector unannotated)
            MultiProcessCollector(self.exposed, path=path)  # type: ignore[no-untyped-call]
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
        self.in_progress = Gauge(
            "graphql_requests_in_progress",
            "GraphQL operations being answered now.",
            multiprocess_mode="livesum",  # the sum over live workers
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
        # At most MAX_OPERATION_NAMES + 2 labels, times the kinds and outcomes.
        self._series: dict[tuple[str, str, str], tuple[Counter, Histogram, Histogram]] = {}

    def exposition(self) -> bytes:
        """The text a scrape of /metrics answers (reads the directory's files if any)."""
        return generate_latest(self.exposed)

    def close(self) -> None:
        """This process stops: its in-progress count leaves the sum."""
        if self.multiprocess_dir is not None:
            _mark_dead(os.getpid(), self.multiprocess_dir)

    def watch(self, hub: Hub) -> None:
        """Live updates' gauges, read from the hub when scraped: with one process only (a
        gauge read from memory at scrape time has no file for the other workers to add up)."""
        if self.multiprocess_dir is not None:
            return
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

    def series(self, label: str, kind: str, outcome: str) -> tuple[Counter, Histogram, Histogram]:
        """The request counter, latency and statements histograms of one operation label,
        kind and outcome; looked up once (a label lookup takes a lock and checks names)."""
        key = (label, kind, outcome)
        found = self._series.get(key)
        if found is None:
            found = self._series[key] = (
                self.requests.labels(label, kind, outcome),
                self.latency.labels(label),
                self.statements.labels(label),
            )
        return found

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


def _check_where_values_go(directory: Path | None) -> None:
    """prometheus-client chooses where values go when it is first imported, from the
    environment: the setting must agree (a directory set in a .env file only would be read but
    never written; an empty variable would write files to the working directory)."""
    named = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    writes_files = values.ValueClass._multiprocess
    if directory is None and not writes_files:
        return
    if directory is not None and writes_files and named and Path(named) == directory:
        return
    raise RuntimeError(
        f"PROMETHEUS_MULTIPROC_DIR is {named!r} in the environment and {directory} in the "
        "settings: set it to a folder in the environment before the process starts "
        "(`graphql-api serve` does, also from .env), or leave it unset."
    )


def _mark_vanished_dead(directory: Path) -> None:
    """Mark dead the processes whose live gauges are in `directory` but which no longer run."""
    for file in directory.glob("gauge_live*_*.db"):
        pid = int(file.stem.rsplit("_", 1)[1])
        if not _running(pid):
            _mark_dead(pid, directory)


def _mark_dead(pid: int, directory: Path) -> None:
    """Remove the process's live gauges from the sum (its counters and histograms stay)."""
    mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: running
        return True
    return True


class MetricsExtension(SchemaExtension):
    """Observe each operation: its outcome, its latency and its SQL statements."""

    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        execution = self.execution_context
        context = execution.context
        metrics: Metrics | None = getattr(getattr(context, "services", None), "metrics", None)
        if metrics is None:
            yield
            return
        counted = _quietly(metrics.in_progress.inc)
        try:
            yield
        finally:
            if counted:
                _quietly(metrics.in_progress.dec)
        _quietly(_record, metrics, execution, time.perf_counter() - started)


def _record(metrics: Metrics, execution: ExecutionContext, seconds: float) -> None:
    label = metrics.operation_label(execution.operation_name)
    try:
        kind = execution.operation_type.value
    except RuntimeError:  # the document did not parse: no operation to speak of
        kind = "unknown"
    result = execution.result
    outcome = "error" if result is None or result.errors else "ok"
    requests, latency, statements = metrics.series(label, kind, outcome)
    requests.inc()
    if kind == "subscription":  # it lasts as long as its client wants: no latency to speak of
        return
    latency.observe(seconds)
    statements.observe(execution.context.db.statements)


def _quietly(record: Callable[..., None], *args: Any) -> bool:
    """Metrics are the operator's business: a failure to record one (its multiprocess folder
    gone, say) goes to the log, never into the client's answer. Whether it was recorded."""
    try:
        record(*args)
    except Exception:
        log.exception("Recording a metric failed")
        return False
    return True
