"""Malformed requests, each with the 4xx it must get. Sent in process (tests/test_transport.py,
both databases) and to the API under uvicorn (tests/test_fuzz.py), whose parser differs.

Every answer must be GraphQL-shaped JSON: `errors[0].extensions.code == "BAD_REQUEST"`, no
`data`. Before the fix, several were plain-text 500s (marked "500 before").
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

TYPENAME = b'{"query": "{ __typename }"}'
JSON = {"Content-Type": "application/json"}
MAX_BODY_BYTES = 256 * 1024  # the default of MAX_BODY_BYTES


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def _with_variables(raw: bytes) -> bytes:
    return b'{"query": "query($v: [Int]) { __typename }", "variables": {"v": ' + raw + b"}}"


@dataclass(frozen=True)
class Case:
    id: str
    status: int
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON))
    method: str = "POST"
    params: dict[str, str] | None = None
    chunked: bool = False  # send the body without Content-Length

    async def send(self, client: httpx.AsyncClient, url: str = "/graphql") -> httpx.Response:
        content: bytes | AsyncIterator[bytes] | None = self.content
        if self.chunked and self.content is not None:
            content = _chunks(self.content)
        return await client.request(
            self.method, url, content=content, headers=self.headers, params=self.params
        )


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 16384):
        yield data[start : start + 16384]


CASES = [
    # The body (500 before: UnicodeDecodeError, RecursionError, ValueError, AttributeError).
    Case("invalid-utf8", 400, b'{"query": "{ __typename }", "x": "\xff\xfe"}'),
    Case("json-nested-5000", 400, _nested(5000)),
    Case("variables-nested-900", 400, _with_variables(_nested(900))),  # uncoded error before
    Case("integer-5000-digits", 400, _with_variables(b"9" * 5000)),
    Case("json-string", 400, b'"{ __typename }"'),
    Case("json-number", 400, b"42"),
    Case("empty-body", 400, b""),
    Case("truncated-json", 400, b'{"query": "{ __typename }"'),
    Case("batch", 400, b"[" + TYPENAME + b"," + TYPENAME + b"]"),
    Case("query-not-a-string", 400, b'{"query": {"a": 1}}'),
    Case("variables-not-an-object", 400, b'{"query": "{ __typename }", "variables": [1]}'),
    Case("operation-name-not-a-string", 400, b'{"query": "{ __typename }", "operationName": 1}'),
    Case("no-query", 400, b'{"qeury": "{ __typename }"}'),
    Case("unknown-operation-name", 400, b'{"query": "{ __typename }", "operationName": "X"}'),
    Case(
        "two-operations-no-name",
        400,
        b'{"query": "query A { __typename } query B { __typename }"}',
    ),
    # Media types: look-alikes and other types are refused, not parsed as JSON.
    Case("content-type-jsonx", 415, TYPENAME, {"Content-Type": "application/jsonx"}),
    Case("content-type-missing", 415, TYPENAME, {}),
    Case("content-type-text", 415, TYPENAME, {"Content-Type": "text/plain"}),
    Case("content-type-graphql", 415, b"{ __typename }", {"Content-Type": "application/graphql"}),
    Case("charset-latin1", 415, TYPENAME, {"Content-Type": "application/json; charset=latin-1"}),
    Case("accept-nothing-we-serve", 406, TYPENAME, {**JSON, "Accept": "text/csv"}),
    # Sizes.
    Case("header-9-kib", 431, TYPENAME, {**JSON, "Authorization": "Bearer " + "a" * 9000}),
    Case("headers-20-kib", 431, TYPENAME, {**JSON, **{f"X-Pad-{n}": "a" * 7000 for n in range(3)}}),
    Case("body-over-limit", 413, b'{"query": "' + b" " * MAX_BODY_BYTES + b'{ __typename }"}'),
    Case(
        "chunked-body-over-limit",
        413,
        b'{"query": "' + b" " * MAX_BODY_BYTES + b'{ __typename }"}',
        chunked=True,
    ),
    # GET and other methods.
    Case(
        "get-variables-nested-5000",
        400,
        method="GET",
        params={"query": "{ __typename }", "variables": _nested(5000).decode()},
    ),
    Case(
        "get-variables-not-json",
        400,
        method="GET",
        params={"query": "{ __typename }", "variables": "{nope"},
    ),
    Case("get-mutation", 400, method="GET", params={"query": "mutation { __typename }"}),
    Case("put", 405, TYPENAME, method="PUT"),
]


def check_refusal(case: Case, response: httpx.Response) -> None:
    """A 4xx with a GraphQL-shaped JSON body: one error with a message and a code."""
    assert response.status_code == case.status, (case.id, response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body: dict[str, Any] = json.loads(response.content)
    assert "data" not in body, body
    [error] = body["errors"]
    assert error["message"], body
    assert error["extensions"]["code"] == "BAD_REQUEST", body
    assert error["extensions"]["requestId"] == response.headers["x-request-id"], body
