"""GraphQL over HTTP: malformed requests get a 4xx GraphQL-shaped answer (never a 500 or plain
text), media types are negotiated as the GraphQL-over-HTTP spec says, bad token headers are
UNAUTHENTICATED, and a document with several operations needs `operationName`."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from graphql_api.transport import GRAPHQL_RESPONSE, negotiate
from tests.conftest import Backend, make_settings
from tests.helpers import Api, serve
from tests.malformed import CASES, Case, check_refusal

GR = GRAPHQL_RESPONSE


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_malformed_requests_get_a_graphql_shaped_4xx(api: Api, case: Case) -> None:
    check_refusal(case, await case.send(api.client))


async def test_the_server_still_answers_after_malformed_requests(api: Api) -> None:
    for case in CASES:
        await case.send(api.client)
    assert (await api.execute("{ __typename }")).ok() == {"__typename": "Query"}


async def test_an_unsupported_method_names_the_allowed_ones(api: Api) -> None:
    response = await api.client.request("PUT", "/graphql", json={"query": "{ __typename }"})
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"  # RFC 9110: a 405 lists what is allowed
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


async def test_size_limits_follow_the_settings_at_their_boundary(backend: Backend) -> None:
    settings = make_settings(
        backend.app_url, max_body_bytes=2048, max_header_bytes=2048, max_header_field_bytes=1024
    )
    query = "{ __typename }"
    async with serve(settings) as api:
        fits = {"X-Pad": "a" * (1024 - len("x-pad"))}
        assert (await api.execute(query, headers=fits)).ok()
        over = {"X-Pad": "a" * (1025 - len("x-pad"))}
        response = await api.client.post("/graphql", json={"query": query}, headers=over)
        check_refusal(Case("field", 431), response)
        many = {f"X-Pad-{n}": "a" * 800 for n in range(3)}
        response = await api.client.post("/graphql", json={"query": query}, headers=many)
        check_refusal(Case("total", 431), response)
        padded = query + " " * (2048 - len(query))
        response = await api.client.get("/graphql", params={"query": padded})
        check_refusal(Case("query-string", 414), response)
        assert (await api.client.get("/graphql", params={"query": query})).status_code == 200


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "Application/JSON",
        "APPLICATION/JSON; CHARSET=UTF-8",
        "application/json;charset=utf-8",
    ],
)
async def test_media_types_are_case_insensitive(api: Api, content_type: str) -> None:
    response = await api.client.post(
        "/graphql", content=b'{"query": "{ __typename }"}', headers={"Content-Type": content_type}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"data": {"__typename": "Query"}}


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, "application/json"),
        ("", "application/json"),
        ("*/*", "application/json"),
        ("application/*", "application/json"),
        ("application/json", "application/json"),
        (GR, GR),
        ("Application/GraphQL-Response+JSON", GR),
        (f"{GR}, application/json;q=0.9", GR),
        (f"application/json, {GR}", GR),  # both named, same quality: the newer type
        (f"{GR};q=0.5, application/json", "application/json"),
        (f"text/html, {GR};q=0.1", GR),
        ("text/html,application/xhtml+xml,*/*;q=0.8", "application/json"),  # a browser
        ("application/json;q=nan", "application/json"),  # a malformed quality is ignored
        ("text/csv", None),
        (f"{GR};q=0, application/json;q=0", None),
    ],
)
def test_accept_negotiation(accept: str | None, expected: str | None) -> None:
    assert negotiate(accept) == expected


async def post(api: Api, query: str, accept: str, **extra: Any) -> Any:
    headers = {"Accept": accept, **extra.pop("headers", {})}
    return await api.client.post("/graphql", json={"query": query, **extra}, headers=headers)


REQUEST_ERRORS = [
    ("parse", "{ __typename", {}, "GRAPHQL_PARSE_FAILED"),
    ("validation", "{ nope }", {}, "GRAPHQL_VALIDATION_FAILED"),
    (
        "variables",
        "query($n: Int!) { tasks(first: $n) { totalCount } }",
        {"variables": {"n": "x"}},
        None,  # graphql-core's message; the code is another item's (BAD_USER_INPUT today)
    ),
]


@pytest.mark.parametrize(
    ("query", "extra", "code"),
    [case[1:] for case in REQUEST_ERRORS],
    ids=[case[0] for case in REQUEST_ERRORS],
)
async def test_request_errors_are_400_with_graphql_response_json_and_200_with_json(
    api: Api, query: str, extra: dict[str, Any], code: str | None
) -> None:
    account = await api.sign_up()
    auth = {"Authorization": f"Bearer {account.token}"}
    new = await post(api, query, GR, headers=auth, **extra)
    assert new.status_code == 400, new.text
    assert new.headers["content-type"] == GR
    classic = await post(api, query, "application/json", headers=auth, **extra)
    assert classic.status_code == 200
    assert classic.headers["content-type"] == "application/json"
    for response in (new, classic):
        body = response.json()
        assert "data" not in body, body  # nothing was executed
        assert body["errors"][0]["extensions"]["code"], body
        if code is not None:
            assert body["errors"][0]["extensions"]["code"] == code


async def test_graphql_response_json_answers_401_without_a_token(api: Api) -> None:
    response = await post(api, "{ me { id } }", GR)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    classic = await post(api, "{ me { id } }", "application/json")
    assert classic.status_code == 200
    assert classic.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_executed_operations_answer_200_even_with_field_errors(api: Api) -> None:
    account = await api.sign_up()
    auth = {"Authorization": f"Bearer {account.token}"}
    ok = await post(api, "{ me { id } }", GR, headers=auth)
    assert ok.status_code == 200
    assert ok.headers["content-type"] == GR
    assert ok.json() == {"data": {"me": {"id": account.id}}}
    refused = await post(
        api, 'mutation { createTask(input: {title: ""}) { id } }', GR, headers=auth
    )
    assert refused.status_code == 200  # execution ran: a field error, with `data`
    assert refused.json()["data"] == {"createTask": None}
    assert refused.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_several_operations_need_an_operation_name_and_none_runs_without(
    api: Api,
) -> None:
    document = """
        mutation First { signUp(input: {email: "first@example.com", password: "password123"}) { token } }
        mutation Second { signUp(input: {email: "second@example.com", password: "password123"}) { token } }
    """
    unnamed = await post(api, document, "application/json")
    assert unnamed.status_code == 400
    assert unnamed.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    assert "operationName" in unnamed.json()["errors"][0]["message"]
    sign_in = 'mutation { signIn(input: {email: "first@example.com", password: "password123"}) { token } }'
    assert (await api.execute(sign_in)).codes != [], "the first operation ran anyway"

    named = await post(api, document, "application/json", operationName="Second")
    assert named.status_code == 200
    assert named.json()["data"]["signUp"]["token"]
    one = await post(api, "query Only { __typename }", "application/json")
    assert one.json() == {"data": {"__typename": "Query"}}  # a single operation needs no name


def forged(header: dict[str, Any]) -> str:
    def b64(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{b64(header)}.{b64({'sub': 'x', 'iat': 1, 'exp': 2**40})}.c2ln"


BAD_TOKEN_HEADERS = {
    "crit-unsupported": {"alg": "HS256", "crit": ["exp"]},
    "crit-not-a-list": {"alg": "HS256", "crit": "b64"},
    "kid-number": {"alg": "HS256", "kid": 5},
    "kid-list": {"alg": "EdDSA", "kid": ["a"]},
    "kid-object": {"alg": "RS256", "kid": {"a": 1}},
}


@pytest.mark.parametrize("header", BAD_TOKEN_HEADERS.values(), ids=BAD_TOKEN_HEADERS.keys())
async def test_tokens_with_bad_headers_are_unauthenticated_not_500(
    api: Api, header: dict[str, Any]
) -> None:
    """PyJWT raises InvalidTokenError (not DecodeError) for these: it escaped as a 500."""
    token = forged(header)
    private = await api.execute("{ me { id } }", token=token)
    assert private.status == 200
    assert private.codes == ["UNAUTHENTICATED"]
    assert private.data is None
    public = await api.execute("{ __typename }", token=token)  # public fields still work
    assert public.ok() == {"__typename": "Query"}
    account = await api.execute(
        'mutation { signUp(input: {email: "bad-token@example.com", password: "password123"})'
        " { user { email } } }",
        token=token,
    )
    assert account.ok()["signUp"]["user"]["email"] == "bad-token@example.com"
