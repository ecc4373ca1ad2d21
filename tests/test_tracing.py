"""Tracing: an operation span per request, under the caller's trace, with SQL and loader spans
beneath it; user ids only as pseudonyms; and nothing at all when tracing is off.

In-process apps get the SDK's in-memory exporter (`create_app(tracer_provider=...)`); one
live server exports over OTLP/HTTP, configured by OpenTelemetry's own variables, to a sink
that decodes what arrives.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from graphql_api import sql
from graphql_api.db import is_transaction_control
from graphql_api.tracing import start_tracing
from tests.conftest import POSTGRESQL_ONLY, Backend, make_settings
from tests.helpers import Account, Api, serve
from tests.live import live_server, sign_up
from tests.test_statement_budget import operation, seed_world, user_row_id, variables

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_SPAN_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_SPAN_ID}-01"


class Traced:
    """An app whose spans land in memory, and how to read them."""

    def __init__(self, api: Api, exporter: InMemorySpanExporter) -> None:
        self.api = api
        self.exporter = exporter

    async def post(
        self, query: str, variables: dict[str, Any] | None = None, **headers: str
    ) -> dict[str, Any]:
        """One request, straight to the app (not `Api.execute`, which may answer it twice)."""
        self.exporter.clear()
        response = await self.api.client.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
        body: dict[str, Any] = response.json()
        return body

    @property
    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def operation_span(self) -> ReadableSpan:
        found = [s for s in self.spans if s.attributes and "graphql.document.hash" in s.attributes]
        assert len(found) == 1, [s.name for s in self.spans]
        return found[0]

    def sql_spans(self) -> list[ReadableSpan]:
        return [
            s
            for s in self.spans
            if s.attributes
            and "db.query.text" in s.attributes
            and not is_transaction_control(str(s.attributes["db.query.text"]))
        ]

    def loader_spans(self) -> list[ReadableSpan]:
        return [s for s in self.spans if s.name.startswith("dataloader ")]

    def under(self, span: ReadableSpan, ancestor: ReadableSpan) -> bool:
        """Whether `ancestor` is `span`'s parent, or its parent's, and so on."""
        by_id = {s.context.span_id: s for s in self.spans}
        parent = span.parent
        while parent is not None:
            if parent.span_id == ancestor.context.span_id:
                return True
            above = by_id.get(parent.span_id)
            parent = above.parent if above is not None else None
        return False


def bearer(account: Account) -> dict[str, str]:
    return {"Authorization": f"Bearer {account.token}"}


def in_memory() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


@pytest.fixture(params=[True, False], ids=["compiled", "graphql-core"])
async def traced(backend: Backend, request: pytest.FixtureRequest) -> AsyncIterator[Traced]:
    """A traced app on either executor."""
    settings = make_settings(backend.app_url, compiled_execution=request.param)
    provider, exporter = in_memory()
    async with serve(settings, tracer_provider=provider) as api:
        yield Traced(api, exporter)
    provider.shutdown()


async def test_a_query_is_one_operation_span_over_its_loader_batches_and_statements(
    traced: Traced, engine: sa.Engine
) -> None:
    # given a user with tasks, tags and subtasks
    account = await traced.api.sign_up()
    ids = seed_world(engine, user_row_id(account), 3)
    # when the task list is asked for
    with traced.api.count_statements() as counter:
        body = await traced.post(
            operation("task_list"),
            variables("task_list", 3, ids),
            **bearer(account),
            **{"X-Request-ID": "trace-test-1"},
        )
    assert "errors" not in body, body
    # then one operation span says what ran
    span = traced.operation_span()
    assert span.name == "query TaskList"
    assert span.attributes is not None
    assert span.attributes["graphql.operation.name"] == "TaskList"
    assert span.attributes["graphql.operation.type"] == "query"
    assert str(span.attributes["graphql.document.hash"]).startswith("sha256:")
    assert span.attributes["request.id"] == "trace-test-1"
    assert "graphql.error.codes" not in span.attributes
    assert span.status.status_code is StatusCode.UNSET
    # under the server span of the HTTP request
    (server,) = [s for s in traced.spans if s.kind is SpanKind.SERVER]
    assert span.parent is not None
    assert span.parent.span_id == server.context.span_id
    assert server.attributes is not None
    assert server.attributes["request.id"] == "trace-test-1"
    # with a span per statement, exactly the statements sent, all under the operation
    statements = traced.sql_spans()
    assert sorted(str(s.attributes["db.query.text"]) for s in statements if s.attributes) == sorted(
        counter.statements
    )
    assert all(traced.under(s, span) for s in statements)
    # and a span per loader batch (tags of the tasks, subtasks, tags of the subtasks), each
    # holding its statement
    loaders = traced.loader_spans()
    assert {s.name for s in loaders} >= {"dataloader tags_of_tasks", "dataloader subtasks_of"}
    assert all(traced.under(s, span) for s in loaders)
    for loader in loaders:
        assert loader.attributes is not None
        assert int(loader.attributes["dataloader.batch.size"]) > 0
        assert any(traced.under(s, loader) for s in statements), loader.name


async def test_the_operation_continues_the_callers_trace(traced: Traced) -> None:
    account = await traced.api.sign_up()
    await traced.post("{ me { email } }", traceparent=TRACEPARENT, **bearer(account))
    span = traced.operation_span()
    (server,) = [s for s in traced.spans if s.kind is SpanKind.SERVER]
    assert server.parent is not None
    assert server.parent.is_remote
    assert f"{server.parent.span_id:016x}" == PARENT_SPAN_ID
    assert f"{span.context.trace_id:032x}" == TRACE_ID
    assert {f"{s.context.trace_id:032x}" for s in traced.spans} == {TRACE_ID}


async def test_error_codes_are_on_the_operation_span(traced: Traced) -> None:
    await traced.post("query Mine { tasks { totalCount } }")  # no token
    span = traced.operation_span()
    assert span.attributes is not None
    assert list(span.attributes["graphql.error.codes"]) == ["UNAUTHENTICATED"]
    assert span.name == "query Mine"
    assert span.status.status_code is StatusCode.UNSET  # the client's doing, not a fault

    account = await traced.api.sign_up()
    mutation = 'mutation { deleteTask(id: "VGFzazox") { id } }'
    await traced.post(mutation, **bearer(account))
    span = traced.operation_span()
    assert span.attributes is not None
    assert list(span.attributes["graphql.error.codes"]) == ["NOT_FOUND"]
    assert span.attributes["graphql.operation.type"] == "mutation"
    assert span.name == "mutation"  # anonymous


async def test_user_ids_appear_only_as_pseudonyms(traced: Traced, engine: sa.Engine) -> None:
    first, second = await traced.api.sign_up(), await traced.api.sign_up()
    seen = []
    for account in (first, first, second):
        await traced.post(operation("task_list"), {"first": 5}, **bearer(account))
        span = traced.operation_span()
        assert span.attributes is not None
        seen.append(span.attributes["enduser.pseudo.id"])
        for raw in (user_row_id(account), account.id, account.email, account.token):
            for each in traced.spans:
                assert raw not in json.dumps(dict(each.attributes or {}), default=str)
                assert raw not in each.name
    assert seen[0] == seen[1] != seen[2]
    assert all(len(str(pseudonym)) == 32 for pseudonym in seen)


async def test_a_failing_statement_ends_its_span_as_an_error(backend: Backend) -> None:
    """The hot reads' path (`sql.execute`) ends spans on errors, as Core does."""
    provider, exporter = in_memory()
    tracing = start_tracing(make_settings(backend.url), provider)
    assert tracing is not None
    engine = sa.create_engine(backend.url)
    tracing.instrument_engine(engine)
    with engine.connect() as conn:
        assert sql.execute(conn, "SELECT 1") == [(1,)]
        with pytest.raises(sa.exc.DBAPIError):
            sql.execute(conn, "SELECT * FROM no_such_table")
    engine.dispose()
    spans = [s for s in exporter.get_finished_spans() if s.attributes]
    statements = [s.attributes.get("db.query.text") for s in spans if s.attributes]
    assert statements[-2:] == ["SELECT 1", "SELECT * FROM no_such_table"]
    assert spans[-2].status.status_code is StatusCode.UNSET
    assert spans[-1].status.status_code is StatusCode.ERROR
    # named by its class: the driver's message may quote a row's values
    assert "no_such_table" not in str(spans[-1].status.description)
    assert spans[-1].attributes is not None
    assert spans[-1].attributes["error.type"] == spans[-1].status.description
    provider.shutdown()


@POSTGRESQL_ONLY
async def test_a_database_timeout_is_a_failed_operation_with_its_statement_span_ended(
    backend: Backend, engine: sa.Engine
) -> None:
    settings = make_settings(backend.app_url, db_lock_timeout_ms=50)
    provider, exporter = in_memory()
    async with serve(settings, tracer_provider=provider) as api:
        traced = Traced(api, exporter)
        account = await api.sign_up()
        with engine.connect() as blocker:  # the owner holds the tasks table
            blocker.execute(sa.text("LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE"))
            with api.count_statements() as counter:
                body = await traced.post("{ tasks { totalCount } }", **bearer(account))
            blocker.rollback()
    assert [e["extensions"]["code"] for e in body["errors"]] == ["SERVICE_UNAVAILABLE"]
    span = traced.operation_span()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert list(span.attributes["graphql.error.codes"]) == ["SERVICE_UNAVAILABLE"]
    statements = traced.sql_spans()
    assert len(statements) == counter.count  # the one that failed ended too
    assert statements[-1].status.status_code is StatusCode.ERROR
    provider.shutdown()


# --- off -------------------------------------------------------------------------------------

OFF_SCRIPT = """
import asyncio, json, sys
import httpx
from graphql_api.app import create_app
from graphql_api.settings import Settings

async def main():
    app = create_app(Settings(_env_file=None, jwt_secret="x" * 40, log_level="WARNING"))
    async with app.router.lifespan_context(app):
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x")
        signed = (await client.post("/graphql", json={"query": 'mutation { signUp(input: '
            '{email: "off@example.com", password: "password123"}) { token } }'})).json()
        token = signed["data"]["signUp"]["token"]
        tasks = (await client.post("/graphql", json={"query": "{ tasks { totalCount } }"},
            headers={"Authorization": "Bearer " + token, "traceparent": "%s"})).json()
        engine = app.state.services.database.engine
        with engine.connect() as conn:
            events = [bool(conn.dispatch.after_cursor_execute),
                      bool(conn.dialect.dispatch.handle_error)]
        print(json.dumps({
            "answer": tasks,
            "loaded": sorted(m for m in sys.modules if m.startswith("opentelemetry.")),
            "middleware": [m.cls.__name__ for m in app.user_middleware],
            "end_of_statement_listeners": events,
            "tracing": app.state.services.tracing is not None,
        }))

asyncio.run(main())
"""


def test_off_nothing_of_tracing_is_built_or_loaded(backend: Backend, tmp_path: Path) -> None:
    """Without an endpoint: no SDK, no exporter, no middleware, no SQL listeners, not even
    imported; the API answers as always (a `traceparent` is ignored)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    env["DATABASE_URL"] = backend.app_url
    output = subprocess.run(
        [sys.executable, "-c", OFF_SCRIPT % TRACEPARENT],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    found = json.loads(output.strip().splitlines()[-1])
    assert found["answer"] == {"data": {"tasks": {"totalCount": 0}}}
    assert found["tracing"] is False
    assert "OpenTelemetryMiddleware" not in found["middleware"]
    assert found["end_of_statement_listeners"] == [False, False]
    sdk_or_instrumentation = [
        module
        for module in found["loaded"]
        if module.startswith(("opentelemetry.sdk", "opentelemetry.instrumentation"))
        or module.startswith("opentelemetry.exporter")
    ]
    assert sdk_or_instrumentation == []


# --- exported over OTLP ----------------------------------------------------------------------


class Sink:
    """An OTLP/HTTP receiver: keeps every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.resources: list[dict[str, str]] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest.FromString(body)
                for resource_spans in request.resource_spans:
                    sink.resources.append(
                        {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                    )
                    for scope in resource_spans.scope_spans:
                        sink.spans.extend(scope.spans)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def attributes(self, span: Any) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for attribute in span.attributes:
            value = attribute.value
            kind = value.WhichOneof("value")
            found[attribute.key] = (
                [v.string_value for v in value.array_value.values]
                if kind == "array_value"
                else getattr(value, kind)
            )
        return found


@contextmanager
def otlp_sink() -> Iterator[Sink]:
    sink = Sink()
    thread = threading.Thread(target=sink.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        sink.server.shutdown()
        sink.server.server_close()


def test_a_live_server_exports_its_spans_over_otlp(backend: Backend, tmp_path: Path) -> None:
    with (
        otlp_sink() as sink,
        live_server(
            backend.url,
            tmp_path / "server.log",
            OTEL_EXPORTER_OTLP_ENDPOINT=sink.url,
            OTEL_SERVICE_NAME="todo-api-under-test",
            OTEL_BSP_SCHEDULE_DELAY="50",
        ) as (base, _),
    ):
        token = sign_up(base, "traced@example.com")
        response = httpx.post(
            f"{base}/graphql",
            json={"query": "query Count { tasks { totalCount } }"},
            headers={"Authorization": f"Bearer {token}", "traceparent": TRACEPARENT},
        )
        assert response.json() == {"data": {"tasks": {"totalCount": 0}}}

        def operation_spans() -> list[Any]:
            return [s for s in list(sink.spans) if s.name == "query Count"]

        deadline = time.monotonic() + 60  # a wait for the batch to arrive, not a measurement
        while not operation_spans() and time.monotonic() < deadline:
            time.sleep(0.1)
    (span,) = operation_spans()
    assert span.trace_id.hex() == TRACE_ID
    attributes = sink.attributes(span)
    assert attributes["graphql.operation.name"] == "Count"
    assert attributes["request.id"] == response.headers["x-request-id"]
    assert {"service.name": "todo-api-under-test"}.items() <= sink.resources[-1].items()
    statements = [s for s in sink.spans if "db.query.text" in sink.attributes(s)]
    assert any(s.trace_id == span.trace_id for s in statements)
