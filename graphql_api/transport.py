"""GraphQL over HTTP at the edge: media types, malformed requests, header and body sizes.

Follows the GraphQL-over-HTTP draft (https://graphql.github.io/graphql-over-http/draft/):
requests are `application/json` (any case, `charset=utf-8` or none; look-alikes such as
`application/jsonx` get 415); answers are `application/graphql-response+json` when the client
asks for it, else `application/json`. With the former, a request that fails before execution
(parse, validation, variables, operation selection) answers 4xx; with `application/json` it
keeps the classic 200. Every refusal, here or in Strawberry, is GraphQL-shaped JSON with an
`extensions.code` (`BAD_REQUEST` for the transport), never a plain-text or 500 answer.

A request may name a persisted document instead of sending its text (`documentId`, or Apollo's
`extensions.persistedQuery`, in a POST body or a GET query string): see `graphql_api.persisted`.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from functools import lru_cache
from typing import Any

import orjson
from cross_web import AsyncHTTPRequestAdapter, HTTPException
from graphql import GraphQLError, OperationDefinitionNode, parse
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.http.base import BaseRequestProtocol
from strawberry.types import ExecutionResult
from strawberry.types.unset import UNSET

from graphql_api.observability import request_id_var
from graphql_api.persisted import PersistedDocumentRefused, PersistedDocuments

JSON = "application/json"
GRAPHQL_RESPONSE = "application/graphql-response+json"
MAX_JSON_DEPTH = 32
"""Deepest nesting of a request's JSON. The schema's inputs need 4; graphql-core and our own
walks over variables recurse, and 1,000 levels exhausted Python's stack (a masked 500)."""

# Statuses of request errors (no execution) answered as application/graphql-response+json.
_REQUEST_ERROR_STATUS = {"UNAUTHENTICATED": 401, "SERVICE_UNAVAILABLE": 503}


def error_body(message: str, code: str = "BAD_REQUEST") -> bytes:
    """A GraphQL response carrying one request error (no `data`: nothing was executed)."""
    extensions = {"code": code, "requestId": request_id_var.get()}
    return orjson.dumps({"errors": [{"message": message, "extensions": extensions}]})


def error_response(status: int, message: str, media_type: str = JSON) -> Response:
    return Response(error_body(message), status_code=status, media_type=media_type)


def parse_media_type(value: str) -> tuple[str, dict[str, str]]:
    """`Application/JSON; Charset="UTF-8"` -> ("application/json", {"charset": "utf-8"})."""
    essence, *parameters = value.split(";")
    params = {}
    for parameter in parameters:
        name, _, raw = parameter.partition("=")
        params[name.strip().lower()] = raw.strip().strip('"').lower()
    return essence.strip().lower(), params


@lru_cache(maxsize=64)  # clients send few distinct Accept headers; each is at most 8 KiB
def negotiate(accept: str | None) -> str | None:
    """The media type to answer with, or None if `accept` allows neither of ours (406).

    No Accept header means application/json (the spec's legacy default), and so does `*/*`;
    application/graphql-response+json when the client names it with the best quality.
    """
    if not accept or not accept.strip():
        return JSON
    ranges = []
    for item in accept.split(","):
        media_range, params = parse_media_type(item)
        try:
            quality = float(params.get("q", "1"))
        except ValueError:
            quality = 1.0
        ranges.append((media_range, quality if 0 <= quality <= 1 else 1.0))  # bad q: ignored

    def rank(media_type: str) -> tuple[float, int]:
        # (quality, specificity) of the most specific range matching `media_type` (RFC 9110).
        best = (0.0, -1)
        for media_range, quality in ranges:
            specificity = {media_type: 2, "application/*": 1, "*/*": 0}.get(media_range, -1)
            if specificity > best[1]:
                best = (quality, specificity)
        return best

    graphql_response, json = rank(GRAPHQL_RESPONSE), rank(JSON)
    if max(graphql_response[0], json[0]) <= 0:
        return None
    # Named explicitly and at least as wanted: the new type; through a wildcard: the classic.
    if graphql_response > json or (graphql_response == json and graphql_response[1] == 2):
        return GRAPHQL_RESPONSE
    return JSON


def load_json(data: str | bytes) -> Any:
    """Strict JSON: orjson refuses invalid UTF-8, lone surrogates, NaN and integers past a
    double's range (no int-to-str digit limit to trip over); nesting is bounded here."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise HTTPException(400, f"The request is not valid JSON: {exc.msg}.") from None
    if _too_deep(value):
        raise HTTPException(400, f"The request's JSON is nested deeper than {MAX_JSON_DEPTH}.")
    return value


def _too_deep(value: Any) -> bool:
    stack = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:  # iterative: a recursive walk is what this guards against
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def operation_count(query: str, max_tokens: int) -> int:
    """Operations defined in `query` (0 if it does not parse: the schema reports that). Not
    cached (a cache keyed by documents of up to MAX_BODY_BYTES is memory an attacker fills);
    `max_tokens` bounds the cost as the schema's own parse does."""
    try:
        document = parse(query, no_location=True, max_tokens=max_tokens)
    except GraphQLError:
        return 0
    return sum(isinstance(d, OperationDefinitionNode) for d in document.definitions)


def request_error_status(result: ExecutionResult) -> int | None:
    """The 4xx/5xx of a result that ended before execution (no data, no error with a path:
    field errors always have one), for application/graphql-response+json; None otherwise."""
    if result.data is not None or not result.errors or any(e.path for e in result.errors):
        return None
    codes = [(error.extensions or {}).get("code") for error in result.errors]
    if "INTERNAL_SERVER_ERROR" in codes:
        return 500
    return next((_REQUEST_ERROR_STATUS[c] for c in codes if c in _REQUEST_ERROR_STATUS), 400)


RequestContext = Callable[[Request], AbstractAsyncContextManager[object]]
"""Opens a request's context (`graphql_api.context.request_context`) and closes it after."""


class GraphQLEndpoint(GraphQL[object, None]):
    """Strawberry's ASGI view with the transport rules above; answers with orjson.

    A plain ASGI endpoint rather than Strawberry's FastAPI router: the router resolves the
    context through FastAPI's dependency injection on every request, which cost more CPU than
    everything else FastAPI does for it (docs/benchmarks.md)."""

    def __init__(
        self,
        *args: Any,
        request_context: RequestContext,
        max_tokens: int,
        persisted: PersistedDocuments | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.request_context = request_context
        self.max_tokens = max_tokens
        self.persisted = persisted

    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)

    def parse_json(self, data: str | bytes) -> Any:
        return load_json(data)

    async def run(  # type: ignore[override]
        self,
        request: Request | WebSocket,
        context: object = UNSET,
        root_value: None = UNSET,
    ) -> Response | WebSocket:
        if isinstance(request, WebSocket):
            return await super().run(request, context, root_value)
        media_type = negotiate(request.headers.get("accept"))
        try:
            async with self.request_context(request) as opened:
                response = await super().run(request, opened, root_value)
        except HTTPException as exc:  # Strawberry's own answer would be plain text
            answer = error_response(exc.status_code, exc.reason, media_type or JSON)
            if exc.status_code == 405:
                answer.headers["allow"] = "GET, POST"
            return answer
        except PersistedDocumentRefused as exc:
            refusal = 400 if exc.request_error and media_type == GRAPHQL_RESPONSE else 200
            return Response(
                error_body(exc.message, exc.code),
                status_code=refusal,
                media_type=media_type or JSON,
                headers={"cache-control": "no-store"},  # a CDN must not keep the refusal
            )
        if response.media_type == JSON and media_type == GRAPHQL_RESPONSE:
            response.headers["content-type"] = GRAPHQL_RESPONSE
            status = getattr(request.state, "graphql_request_error", None)
            if status is not None:
                response.status_code = status
                if status == 401:
                    response.headers["www-authenticate"] = "Bearer"
        return response

    def should_render_graphql_ide(self, request: BaseRequestProtocol) -> bool:
        """Strawberry's rule (a GET without `query` from a browser), except for a GET naming a
        persisted document: clients such as Apollo's send `Accept: */*`."""
        params = request.query_params
        return (
            super().should_render_graphql_ide(request)
            and params.get("documentId") is None
            and params.get("extensions") is None
        )

    async def parse_http_body(self, request: AsyncHTTPRequestAdapter) -> GraphQLRequestData:
        """Strawberry's, minus its leniencies: a substring match on the content type, no check
        that the body is an object or that `operationName` is a string. A persisted document's
        id is resolved to its text here."""
        if negotiate(request.headers.get("accept")) is None:
            raise HTTPException(406, f"Accept {GRAPHQL_RESPONSE} or {JSON}.")
        if request.method == "GET":
            data = self.parse_query_params(request.query_params)
        else:
            media_type, params = parse_media_type(request.content_type or "")
            if media_type != JSON or params.get("charset", "utf-8") != "utf-8":
                raise HTTPException(415, f"Send the request as {JSON} (UTF-8).")
            data = self.parse_json(await request.get_body())
        if isinstance(data, list):
            raise HTTPException(400, "Batching is not enabled: send one operation per request.")
        if not isinstance(data, dict):
            raise HTTPException(400, "The request must be a JSON object.")
        expected = {
            "query": str,
            "variables": dict,
            "operationName": str,
            "extensions": dict,
            "documentId": str,
        }
        for name, kind in expected.items():
            if data.get(name) is not None and not isinstance(data[name], kind):
                shape = "a string" if kind is str else "an object"
                raise HTTPException(400, f"`{name}` must be {shape} or null.")
        query, extensions, document_id = (
            data.get("query"),
            data.get("extensions"),
            data.get("documentId"),
        )
        persisted = self.persisted
        if persisted is not None and persisted.concerns(extensions, document_id):
            query = await persisted.resolve(query, extensions, document_id)
        return GraphQLRequestData(
            query=query,
            variables=data.get("variables"),
            operation_name=data.get("operationName"),
            extensions=extensions,
        )

    async def execute_single(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        sub_response: Response,
        context: object,
        root_value: None,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        # Strawberry runs the first operation when there are several and no operationName;
        # the spec makes that a request error. Only documents with two operation keywords
        # can have two operations (an anonymous one must stand alone), so most skip the parse.
        query = request_data.query
        if (
            request_data.operation_name is None
            and query is not None
            and sum(query.count(word) for word in ("query", "mutation", "subscription")) > 1
            and operation_count(query, self.max_tokens) > 1
        ):
            raise HTTPException(
                400, "The document has several operations: name one in `operationName`."
            )
        return await super().execute_single(
            request, request_adapter, sub_response, context, root_value, request_data
        )

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        response = await super().process_result(request, result)
        status = request_error_status(result)
        if status is not None:
            # Nothing was executed: the spec leaves `data` out (Strawberry sends null).
            response.pop("data", None)
            request.state.graphql_request_error = status
        return response


class TransportLimits:
    """Bounds what reaches the application: header sizes (431), the query string (414) and the
    body (413, from Content-Length up front or counted as it streams), answered as GraphQL JSON.

    This runs once the server has parsed the head: `graphql-api serve` also bounds it while it
    is parsed (h11's limit, and `graphql_api.bounded_http` for httptools, which has none).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_header_bytes: int,
        max_header_field_bytes: int,
        max_body_bytes: int,
    ) -> None:
        self.app = app
        self.max_header_bytes = max_header_bytes
        self.max_header_field_bytes = max_header_field_bytes
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        sizes = [len(name) + len(value) for name, value in headers]
        refusal: tuple[int, str] | None = None
        if max(sizes, default=0) > self.max_header_field_bytes:
            refusal = 431, f"A request header is over {self.max_header_field_bytes} bytes."
        elif sum(sizes) > self.max_header_bytes:
            refusal = 431, f"The request headers are over {self.max_header_bytes} bytes."
        elif len(scope.get("query_string", b"")) > self.max_body_bytes:
            refusal = 414, f"The query string is over {self.max_body_bytes} bytes."
        elif self._content_length(headers) > self.max_body_bytes:
            refusal = 413, f"The request body is over {self.max_body_bytes} bytes."
        if refusal is not None:
            await error_response(*refusal)(scope, receive, send)
            return

        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body_bytes:
                raise _BodyTooLarge
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracked_send)
        except _BodyTooLarge:
            if started:
                raise
            message = f"The request body is over {self.max_body_bytes} bytes."
            await error_response(413, message)(scope, receive, send)

    @staticmethod
    def _content_length(headers: list[tuple[bytes, bytes]]) -> int:
        for name, value in headers:
            if name == b"content-length" and value.isdigit():  # servers refuse bad ones first
                # Past 18 digits it is over any limit (and int() refuses 4,300 digits and more).
                return int(value) if len(value) <= 18 else 1 << 62
        return 0


class _BodyTooLarge(Exception):
    """Raised from `receive` when a streamed body passes the limit."""
