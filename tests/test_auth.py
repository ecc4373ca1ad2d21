"""Authentication: built-in accounts and tokens, an external identity provider's JWKS, and every
way a token can be wrong."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from graphql_api.relay import decode_id
from graphql_api.settings import Settings
from tests.conftest import JWT_SECRET, Backend, make_settings
from tests.helpers import Api, serve, user_tables

ME = "{ me { id email name } }"


def built_in_token(**claims: Any) -> str:
    now = int(time.time())
    payload = {"sub": "someone", "iat": now, "exp": now + 60, "iss": "graphql-api", **claims}
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, JWT_SECRET, "HS256")


async def test_sign_up_then_sign_in_returns_working_tokens(api: Api) -> None:
    account = await api.sign_up("Ada@Example.com", password="correct horse")
    me = (await api.execute(ME, as_user=account)).ok()["me"]
    assert me == {"id": account.id, "email": "ada@example.com", "name": "Ada"}

    signed_in = await api.execute(
        'mutation { signIn(input: {email: " ADA@example.COM ", password: "correct horse"})'
        " { token user { id } } }"
    )
    token = signed_in.ok()["signIn"]["token"]
    assert (await api.execute(ME, token=token)).ok()["me"]["id"] == account.id


async def test_email_is_unique_ignoring_case(api: Api) -> None:
    await api.sign_up("dup@example.com")
    again = await api.execute(
        'mutation { signUp(input: {email: "DUP@example.com", password: "password123"}) { token } }'
    )
    assert again.codes == ["CONFLICT"]


@pytest.mark.parametrize(
    ("email", "password", "field"),
    [
        ("short@example.com", "1234567", "password"),
        ("not-an-email", "password123", "email"),
        ("a@b", "password123", "email"),
        ("someone@users.invalid", "password123", "email"),  # where placeholders live
        ("me@host.localhost", "password123", "email"),
    ],
)
async def test_sign_up_refuses_bad_credentials(
    api: Api, email: str, password: str, field: str
) -> None:
    response = await api.execute(
        "mutation($e: String!, $p: String!) { signUp(input: {email: $e, password: $p}) { token } }",
        {"e": email, "p": password},
    )
    assert response.codes == ["BAD_USER_INPUT"]
    assert response.errors[0]["extensions"]["field"] == field


async def test_wrong_email_and_wrong_password_get_the_same_answer(api: Api) -> None:
    await api.sign_up("known@example.com", password="password123")
    sign_in = (
        'mutation($e: String!) { signIn(input: {email: $e, password: "nope-nope"}) { token } }'
    )
    wrong_password = await api.execute(sign_in, {"e": "known@example.com"})
    unknown_email = await api.execute(sign_in, {"e": "unknown@example.com"})
    assert wrong_password.codes == unknown_email.codes == ["UNAUTHENTICATED"]
    assert wrong_password.errors[0]["message"] == unknown_email.errors[0]["message"]
    assert wrong_password.data == unknown_email.data == {"signIn": None}


async def test_unknown_email_costs_a_password_check_too(settings: Settings) -> None:
    """An unknown email runs a full argon2 verification against a decoy hash made with the same
    parameters as real ones, so it costs what a wrong password costs (no user probing). Checked
    structurally: a timing ratio flickers on a shared machine."""
    from argon2 import PasswordHasher, extract_parameters

    from graphql_api.auth import Passwords

    passwords = Passwords(settings.model_copy(update={"argon2_time_cost": 3}))
    real = passwords.hash("password123")
    verified_against: list[str] = []

    class RecordingHasher(PasswordHasher):
        def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
            verified_against.append(str(hash))
            return super().verify(hash, password)

    passwords._hasher = RecordingHasher.from_parameters(extract_parameters(real))
    assert not passwords.verify(real, "wrong-password")
    assert not passwords.verify(None, "wrong-password")
    assert not passwords.verify(None, "password123")
    decoy = verified_against[1]
    assert verified_against == [real, decoy, decoy]
    assert extract_parameters(decoy) == extract_parameters(real)


NO_TOKEN_MESSAGE = "Sign in first"


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, NO_TOKEN_MESSAGE),
        ("Bearer", "Bearer <token>"),
        ("Basic dXNlcjpwYXNz", "Bearer <token>"),
        ("Bearer not-a-jwt", "Malformed token"),
        ("Bearer " + built_in_token(exp=int(time.time()) - 3600), "expired"),
        ("Bearer " + built_in_token(iss="someone-else"), "issuer"),
        ("Bearer " + built_in_token(exp=None), "`exp`"),
        ("Bearer " + built_in_token(iat=None), "`iat`"),
        ("Bearer " + built_in_token(sub=None), "`sub`"),
        (
            "Bearer " + jwt.encode({"sub": "x", "iat": 1, "exp": 2**40}, "another-secret-" * 3),
            "Invalid",
        ),
        (
            "Bearer " + jwt.encode({"sub": "x", "iat": 1, "exp": 2**40}, None, algorithm="none"),
            "algorithm",
        ),
        (
            "Bearer "
            + jwt.encode({"sub": "x", "iat": 1, "exp": 2**40}, JWT_SECRET * 2, algorithm="HS512"),
            "algorithm",
        ),
    ],
    ids=[
        "no-token",
        "empty-bearer",
        "basic-scheme",
        "garbage",
        "expired",
        "wrong-issuer",
        "no-exp",
        "no-iat",
        "no-sub",
        "other-key",
        "alg-none",
        "unpinned-hs512",
    ],
)
async def test_bad_tokens_are_unauthenticated_with_a_reason_and_no_data(
    api: Api, header: str | None, reason: str
) -> None:
    headers = {} if header is None else {"Authorization": header}
    response = await api.execute("{ me { id } tasks { totalCount } }", headers=headers)
    assert response.data is None
    assert response.codes == ["UNAUTHENTICATED"]
    assert reason in response.errors[0]["message"]


async def test_bad_tokens_are_refused_before_a_database_connection_is_taken(api: Api) -> None:
    with api.count_statements() as counter:
        await api.execute("{ me { id } }", headers={"Authorization": "Bearer garbage"})
        await api.execute("{ me { id } }", token=built_in_token(exp=1))
    assert counter.count == 0
    pool = api.app.state.services.database.engine.pool
    assert pool.checkedout() == 0


async def test_a_token_verified_before_still_expires(backend: Backend) -> None:
    """A verified token is remembered (its signature is not checked again) until it expires."""
    async with serve(make_settings(backend.app_url, jwt_leeway_seconds=0)) as api:
        account = await api.sign_up()
        expires = int(time.time()) + 2
        token = built_in_token(sub=decode_id(account.id)[1], exp=expires)
        for _ in range(2):  # verified, then remembered
            assert (await api.execute(ME, token=token)).ok()["me"]["id"] == account.id
        await asyncio.sleep(expires - time.time() + 0.1)
        response = await api.execute(ME, token=token)
        assert response.codes == ["UNAUTHENTICATED"]
        assert "expired" in response.errors[0]["message"]


async def test_public_operations_and_introspection_work_without_a_token(api: Api) -> None:
    response = await api.execute("{ __schema { queryType { name } } __typename }")
    assert response.ok() == {"__schema": {"queryType": {"name": "Query"}}, "__typename": "Query"}


async def test_a_token_of_a_deleted_account_stops_working(api: Api) -> None:
    account = await api.sign_up()
    assert (
        await api.execute('mutation { deleteMe(password: "password123") }', as_user=account)
    ).ok() == {"deleteMe": True}
    after = await api.execute(
        'mutation { createTask(input: {title: "x"}) { id } }', as_user=account
    )
    assert after.codes == ["UNAUTHENTICATED"]


@pytest.mark.parametrize(
    "subject",
    ["no-such-user", "x'; UPDATE users SET name = 'owned' WHERE true; --", "a\\'b", "é"],
)
async def test_a_signed_token_for_an_unknown_or_hostile_subject_reaches_nothing(
    api: Api, settings: Settings, engine: Any, subject: str
) -> None:
    """A token whose subject is no user's (as if the signing key had issued it, which only our
    own key can) reaches nothing: the subject is a value, never SQL, and the account that
    does exist is untouched."""
    from graphql_api.auth import Tokens

    account = await api.sign_up()
    token = Tokens(settings).issue(subject)
    for query in ("{ me { id } }", "{ tasks { totalCount } }"):
        refused = await api.execute(query, token=token)
        assert refused.codes == ["UNAUTHENTICATED"], refused.body
        assert "no longer exists" in refused.errors[0]["message"]
    with engine.connect() as conn:
        names = conn.exec_driver_sql("SELECT DISTINCT name FROM users").scalars().all()
    assert "owned" not in names
    assert (await api.execute("{ me { id } }", as_user=account)).ok() == {"me": {"id": account.id}}


async def test_update_me_changes_only_what_is_given(api: Api) -> None:
    account = await api.sign_up("grace@example.com")
    updated = await api.execute(
        'mutation { updateMe(input: {name: "  Grace Hopper "}) { name email } }', as_user=account
    )
    assert updated.ok()["updateMe"] == {"name": "Grace Hopper", "email": "grace@example.com"}
    too_long = await api.execute(
        "mutation($n: String!) { updateMe(input: {name: $n}) { name } }",
        {"n": "x" * 101},
        as_user=account,
    )
    assert too_long.codes == ["BAD_USER_INPUT"]


async def test_delete_me_removes_the_account_and_everything_it_owns(api: Api, engine: Any) -> None:
    import sqlalchemy as sa

    account = await api.sign_up()
    other = await api.sign_up()
    for user in (account, other):
        tag = (
            await api.execute('mutation { createTag(input: {name: "t"}) { id } }', as_user=user)
        ).ok()
        await api.execute(
            'mutation($t: ID!) { createTask(input: {title: "x", tagIds: [$t]}) { id } }',
            {"t": tag["createTag"]["id"]},
            as_user=user,
        )
    (await api.execute('mutation { deleteMe(password: "password123") }', as_user=account)).ok()

    left = {
        "users": 1,
        "tags": 1,
        "tasks": 1,
        "task_tags": 1,
        "changes": 2,
    }  # the other user's rows
    with engine.connect() as conn:
        for table in user_tables():
            remaining = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            assert remaining == left.get(table.name, 0), table.name


# --- an external identity provider, served on loopback by the test -------------------------


class Provider:
    """A stand-in identity provider: a JWKS endpoint and keys to sign with."""

    def __init__(self) -> None:
        self.ed_key = ed25519.Ed25519PrivateKey.generate()
        self.rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kids = {"ed-1": self.ed_key, "rsa-1": self.rsa_key}
        self.fetches = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid, key in self.kids.items():
            algorithm = (
                jwt.algorithms.OKPAlgorithm if kid.startswith("ed") else jwt.algorithms.RSAAlgorithm
            )
            jwk = json.loads(algorithm.to_jwk(key.public_key()))
            keys.append({**jwk, "kid": kid, "use": "sig"})
        return {"keys": keys}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                provider.fetches += 1
                body = json.dumps(provider.jwks()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        return Handler

    def token(self, kid: str = "ed-1", **claims: Any) -> str:
        now = int(time.time())
        payload = {
            "sub": "ext-user-1",
            "email": "Ext@Example.com",
            "iat": now,
            "exp": now + 300,
            "iss": "https://auth.example.com",
            "aud": "todo-api",
            **claims,
        }
        key = self.kids.get(kid) or ed25519.Ed25519PrivateKey.generate()
        algorithm = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "EdDSA"
        payload = {k: v for k, v in payload.items() if v is not None}
        return jwt.encode(payload, key, algorithm=algorithm, headers={"kid": kid})


@pytest.fixture
def provider() -> Iterator[Provider]:
    provider = Provider()
    provider.thread.start()
    yield provider
    provider.server.shutdown()


@pytest.fixture
async def external_api(backend: Backend, provider: Provider) -> Any:
    settings = make_settings(
        backend.app_url,
        jwt_jwks_url=provider.url,
        jwt_issuer="https://auth.example.com",
        jwt_audience="todo-api",
        jwks_min_refetch_seconds=60,
    )
    async with serve(settings) as api:
        yield api


@pytest.mark.parametrize("kid", ["ed-1", "rsa-1"])
async def test_external_tokens_are_verified_and_provision_the_user_once(
    external_api: Api, provider: Provider, kid: str
) -> None:
    token = provider.token(kid)
    first = await external_api.execute(ME, token=token)
    assert first.ok()["me"]["email"] == "ext@example.com"
    second = await external_api.execute(ME, token=token)
    assert second.ok()["me"]["id"] == first.ok()["me"]["id"]


async def test_concurrent_first_requests_provision_one_user(
    external_api: Api, provider: Provider
) -> None:
    token = provider.token(sub="ext-racer", email="racer@example.com")
    responses = await asyncio.gather(*(external_api.execute(ME, token=token) for _ in range(8)))
    ids = {response.ok()["me"]["id"] for response in responses}
    assert len(ids) == 1


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"iss": "https://evil.example.com"}, "issuer"),
        ({"aud": "another-api"}, "audience"),
        ({"aud": None}, "`aud`"),
        ({"exp": int(time.time()) - 600}, "expired"),
    ],
)
async def test_external_tokens_with_wrong_claims_are_refused(
    external_api: Api, provider: Provider, claims: dict[str, Any], reason: str
) -> None:
    response = await external_api.execute(ME, token=provider.token(**claims))
    assert response.codes == ["UNAUTHENTICATED"]
    assert reason in response.errors[0]["message"]


async def test_a_rotated_key_is_fetched_but_unknown_kids_cannot_hammer_the_provider(
    external_api: Api, provider: Provider
) -> None:
    (await external_api.execute(ME, token=provider.token("ed-1"))).ok()
    assert provider.fetches == 1

    for n in range(20):  # a flood of made-up key ids: at most one refetch per interval
        response = await external_api.execute(ME, token=provider.token(f"forged-{n}"))
        assert response.codes == ["UNAUTHENTICATED"]
    assert provider.fetches <= 2


async def test_an_hs256_token_signed_with_the_public_key_is_refused(
    external_api: Api, provider: Provider
) -> None:
    """Algorithm confusion: HS256 is only ever checked against JWT_SECRET."""
    from cryptography.hazmat.primitives import serialization

    public_pem = provider.rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    # PyJWT refuses a PEM key as an HMAC secret when signing, so forge the MAC by hand.
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "kid": "rsa-1", "typ": "JWT"}).encode())
    body = b64(json.dumps({"sub": "x", "iat": 1, "exp": 2**40}).encode())
    signature = hmac.new(public_pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
    response = await external_api.execute(ME, token=f"{header}.{body}.{b64(signature)}")
    assert response.codes == ["UNAUTHENTICATED"]


# --- provider identities: keyed by (issuer, subject), never by an unverified email -----------


async def test_a_built_in_account_cannot_squat_a_provider_users_email(
    external_api: Api, provider: Provider
) -> None:
    squatter = await external_api.sign_up("ext@example.com", password="squatter-password")
    (
        await external_api.execute(
            'mutation { createTask(input: {title: "mine"}) { id } }', as_user=squatter
        )
    ).ok()

    me = (await external_api.execute(ME, token=provider.token(email="Ext@Example.com"))).ok()
    assert me["me"]["email"] == "ext@example.com"
    assert me["me"]["id"] != squatter.id  # neither blocked nor captured
    tasks = await external_api.execute("{ tasks { totalCount } }", token=provider.token())
    assert tasks.ok() == {"tasks": {"totalCount": 0}}

    signed_in = await external_api.execute(
        'mutation { signIn(input: {email: "ext@example.com", password: "squatter-password"})'
        " { user { id } } }"
    )
    assert signed_in.ok()["signIn"]["user"]["id"] == squatter.id  # still only its own account


async def test_a_provider_user_is_never_found_by_email(
    external_api: Api, provider: Provider
) -> None:
    (await external_api.execute(ME, token=provider.token(email="first@example.com"))).ok()
    for password in ("", "password123"):  # it has no password, and is not a built-in account
        response = await external_api.execute(
            'mutation($p: String!) { signIn(input: {email: "first@example.com", password: $p})'
            " { token } }",
            {"p": password},
        )
        assert response.codes == ["UNAUTHENTICATED"]
    # Nor does its unverified email reserve anything among built-in accounts.
    built_in = await external_api.sign_up("first@example.com")
    me = await external_api.execute(ME, token=provider.token(email="first@example.com"))
    assert me.ok()["me"]["id"] != built_in.id


async def test_the_placeholder_email_cannot_be_claimed(
    external_api: Api, provider: Provider
) -> None:
    for email in ("ext-user-1@users.invalid", "EXT-USER-1@users.invalid "):
        claimed = await external_api.execute(
            'mutation($e: String!) { signUp(input: {email: $e, password: "password123"})'
            " { token } }",
            {"e": email},
        )
        assert claimed.codes == ["BAD_USER_INPUT"]
    me = (await external_api.execute(ME, token=provider.token(email=None))).ok()["me"]
    assert me["email"].endswith("@users.invalid")


async def test_a_provider_subject_equal_to_a_built_in_id_is_another_user(
    external_api: Api, provider: Provider
) -> None:
    from graphql_api.relay import decode_id

    victim = await external_api.sign_up("victim@example.com")
    (
        await external_api.execute(
            'mutation { createTask(input: {title: "secret"}) { id } }', as_user=victim
        )
    ).ok()
    _, victim_id = decode_id(victim.id)

    token = provider.token(sub=victim_id, email="victim@example.com")
    me = (await external_api.execute(ME, token=token)).ok()["me"]
    assert me["id"] != victim.id
    tasks = await external_api.execute("{ tasks { totalCount } }", token=token)
    assert tasks.ok() == {"tasks": {"totalCount": 0}}


async def test_provider_identities_cost_no_extra_statement_once_provisioned(
    external_api: Api, provider: Provider
) -> None:
    token = provider.token(sub="counted")
    (await external_api.execute(ME, token=token)).ok()
    account = await external_api.sign_up()
    with external_api.count_statements() as external:
        (await external_api.execute(ME, token=token)).ok()
    with external_api.count_statements() as built_in:
        (await external_api.execute(ME, as_user=account)).ok()
    assert external.count == built_in.count


# --- the account lifecycle of provider users (built-in accounts: test_account_lifecycle.py) ---


async def test_sign_out_everywhere_revokes_provider_tokens_by_their_iat(
    external_api: Api, provider: Provider
) -> None:
    """A provider's `iat` has whole seconds: a token of the sign-out's second counts as issued
    before it (refused); one of a later second works."""
    now = int(time.time())
    earlier = provider.token(sub="leaving", iat=now - 5)
    current = provider.token(sub="leaving", iat=now)
    (await external_api.execute(ME, token=earlier)).ok()
    signed_out = await external_api.execute("mutation { signOutEverywhere }", token=current)
    assert signed_out.ok() == {"signOutEverywhere": True}

    for token in (earlier, current, provider.token(sub="leaving", iat=now)):
        refused = await external_api.execute(ME, token=token)
        assert refused.codes == ["UNAUTHENTICATED"]
        assert "signed out" in refused.errors[0]["message"]
    # Not provisioned again as a new account either: the user still exists, its token is old.
    later = provider.token(sub="leaving", iat=int(time.time()) + 1)
    assert (await external_api.execute(ME, token=later)).ok()["me"]["email"] == "ext@example.com"
    other = provider.token(sub="staying")
    assert (await external_api.execute(ME, token=other)).ok()


async def test_provider_users_delete_themselves_without_a_password_and_cannot_change_one(
    external_api: Api, provider: Provider
) -> None:
    token = provider.token(sub="no-password")
    change = await external_api.execute(
        'mutation { changePassword(currentPassword: "whatever-1", newPassword: "whatever-2")'
        " { token } }",
        token=token,
    )
    assert change.codes == ["BAD_USER_INPUT"]
    assert change.errors[0]["extensions"]["field"] == "currentPassword"
    deleted = await external_api.execute("mutation { deleteMe }", token=token)
    assert deleted.ok() == {"deleteMe": True}
