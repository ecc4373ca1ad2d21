"""The account lifecycle through HTTP with real tokens: changePassword, signOutEverywhere and
deleteMe(password). Older tokens stop working, fresh ones work (also within the same second),
own-password checks are throttled like sign-ins, and ordinary requests cost no extra statement.
Provider (JWKS) accounts: `test_auth.py`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import jwt
import pytest
import sqlalchemy as sa

from graphql_api.models import USERS, utcnow
from graphql_api.relay import decode_id
from graphql_api.users import repository
from tests.conftest import JWT_SECRET, Backend, make_settings
from tests.helpers import Account, Api, Response, serve

ME = "{ me { id email } }"
CHANGE = (
    "mutation($c: String!, $n: String!) { changePassword(currentPassword: $c, newPassword: $n)"
    " { token user { id email } } }"
)
SIGN_OUT = "mutation { signOutEverywhere }"
DELETE = "mutation($p: String) { deleteMe(password: $p) }"
SIGN_IN = (
    "mutation($e: String!, $p: String!) { signIn(input: {email: $e, password: $p}) { token } }"
)
PASSWORD = "password123"  # Api.sign_up's


async def sign_in(api: Api, email: str, password: str = PASSWORD) -> Response:
    return await api.execute(SIGN_IN, {"e": email, "p": password})


async def token_of(api: Api, email: str, password: str = PASSWORD) -> str:
    token: str = (await sign_in(api, email, password)).ok()["signIn"]["token"]
    return token


async def works(api: Api, token: str) -> bool:
    response = await api.execute(ME, token=token)
    if response.errors:
        assert response.codes == ["UNAUTHENTICATED"], response.body
        assert response.data is None
        return False
    return True


def issued_second(token: str) -> int:
    second: int = jwt.decode(token, options={"verify_signature": False})["iat"]
    return second


async def change_password(api: Api, token: str, current: str, new: str) -> Response:
    return await api.execute(CHANGE, {"c": current, "n": new}, token=token)


# --- changePassword --------------------------------------------------------------------------


async def test_change_password_revokes_every_older_token_and_answers_a_fresh_one(api: Api) -> None:
    account = await api.sign_up()
    other_device = await token_of(api, account.email)
    bystander = await api.sign_up()

    changed = (await change_password(api, account.token, PASSWORD, "a-new-password")).ok()
    payload = changed["changePassword"]
    assert payload["user"] == {"id": account.id, "email": account.email}

    assert await works(api, payload["token"])
    for old in (account.token, other_device):
        refused = await api.execute(ME, token=old)
        assert refused.codes == ["UNAUTHENTICATED"]
        assert "signed out" in refused.errors[0]["message"]
    assert await works(api, bystander.token)  # nobody else's tokens

    assert (await sign_in(api, account.email)).codes == ["UNAUTHENTICATED"]
    assert await works(api, await token_of(api, account.email, "a-new-password"))


async def test_tokens_from_the_same_second_as_a_change_are_told_apart(api: Api) -> None:
    """`iat` has whole seconds: the token of the request that changes the password and the
    fresh one it answers are usually issued in the same second. The old one must fail, the
    new one work (tried until a pair really shares its second)."""
    account = await api.sign_up()
    passwords = [PASSWORD, "second-password"]
    token = account.token
    for attempt in range(20):
        current, new = passwords[attempt % 2], passwords[(attempt + 1) % 2]
        old = await token_of(api, account.email, current)  # issued just now
        fresh = (await change_password(api, old, current, new)).ok()["changePassword"]["token"]
        assert not await works(api, token)
        assert not await works(api, old)
        assert await works(api, fresh)
        if issued_second(old) == issued_second(fresh):
            return
        token = fresh
    pytest.fail("no old and fresh token shared a second in 20 tries")


async def test_a_new_password_must_be_acceptable_and_nothing_changes_otherwise(
    api: Api,
) -> None:
    account = await api.sign_up()
    short = await change_password(api, account.token, PASSWORD, "short")
    assert short.codes == ["BAD_USER_INPUT"]
    assert short.errors[0]["extensions"]["field"] == "newPassword"
    assert short.data == {"changePassword": None}
    assert await works(api, account.token)
    assert await works(api, await token_of(api, account.email))


async def test_the_same_password_again_just_renews_the_tokens(api: Api) -> None:
    account = await api.sign_up()
    fresh = (await change_password(api, account.token, PASSWORD, PASSWORD)).ok()
    assert not await works(api, account.token)
    assert await works(api, fresh["changePassword"]["token"])


# --- a wrong current password: refused, and counted like a failed sign-in --------------------


@pytest.fixture
async def strict(backend: Backend) -> AsyncIterator[Api]:
    limits = {
        "sign_in_max_failures_per_email_and_address": 3,
        "sign_in_max_failures_per_address": 10,
    }
    async with serve(make_settings(backend.app_url, **limits)) as api:
        yield api


async def test_a_wrong_current_password_is_bad_input_and_throttled_like_a_sign_in(
    strict: Api,
) -> None:
    account = await strict.sign_up()
    for _ in range(3):
        wrong = await change_password(strict, account.token, "not-the-password", "new-password")
        assert wrong.codes == ["BAD_USER_INPUT"]
        assert wrong.errors[0]["extensions"]["field"] == "currentPassword"
        assert wrong.data == {"changePassword": None}
        assert await works(strict, account.token)  # the session is not touched

    # The (email, address) pair is now blocked, for changePassword and signIn alike.
    blocked = await change_password(strict, account.token, PASSWORD, "new-password")
    assert blocked.codes == ["RATE_LIMITED"]
    assert blocked.errors[0]["extensions"]["retryAfter"] > 0
    assert (await sign_in(strict, account.email)).codes == ["RATE_LIMITED"]
    assert await works(strict, account.token)  # nothing was changed


async def test_failed_sign_ins_count_against_change_password_and_a_success_clears_them(
    strict: Api,
) -> None:
    account = await strict.sign_up()
    for _ in range(2):
        assert (await sign_in(strict, account.email, "wrong")).codes == ["UNAUTHENTICATED"]
    fresh = (await change_password(strict, account.token, PASSWORD, "new-password")).ok()
    token = fresh["changePassword"]["token"]
    for _ in range(2):  # the success cleared the pair: two more failures are not a block
        wrong = await change_password(strict, token, "wrong-password", "other-password")
        assert wrong.codes == ["BAD_USER_INPUT"]
    assert await works(strict, await token_of(strict, account.email, "new-password"))


async def test_one_operation_checks_one_password(api: Api) -> None:
    account = await api.sign_up()
    twice = await api.execute(
        f'mutation {{ a: changePassword(currentPassword: "{PASSWORD}", newPassword: "x-password")'
        f' {{ token }} b: deleteMe(password: "{PASSWORD}") }}',
        as_user=account,
    )
    assert twice.codes == ["QUERY_TOO_COMPLEX"]
    assert twice.errors[0]["extensions"]["limit"] == "passwordFields"
    assert await works(api, account.token)


# --- signOutEverywhere -----------------------------------------------------------------------


async def test_sign_out_everywhere_revokes_every_token_issued_before_it(api: Api) -> None:
    account = await api.sign_up()
    other_device = await token_of(api, account.email)
    bystander = await api.sign_up()

    assert (await api.execute(SIGN_OUT, as_user=account)).ok() == {"signOutEverywhere": True}

    for old in (account.token, other_device):
        assert not await works(api, old)
        again = await api.execute(SIGN_OUT, token=old)
        assert again.codes == ["UNAUTHENTICATED"]
    assert await works(api, bystander.token)
    assert await works(api, await token_of(api, account.email))  # signing in again works


async def test_a_sign_in_in_the_same_second_as_a_sign_out_works(api: Api) -> None:
    account = await api.sign_up()
    for _ in range(20):
        old = await token_of(api, account.email)
        (await api.execute(SIGN_OUT, token=old)).ok()
        fresh = await token_of(api, account.email)
        assert not await works(api, old)
        assert await works(api, fresh)
        if issued_second(old) == issued_second(fresh):
            return
    pytest.fail("no old and fresh token shared a second in 20 tries")


async def test_tokens_with_whole_seconds_only_count_as_issued_at_the_start_of_their_second(
    api: Api, engine: sa.Engine
) -> None:
    """Built-in tokens from before `iat_us` (and providers' tokens) have `iat` alone: one of
    the sign-out's second may be older than it, so it is refused; one of the next works."""
    account = await api.sign_up()
    (await api.execute(SIGN_OUT, as_user=account)).ok()
    _, user_id = decode_id(account.id)
    with engine.connect() as conn:
        query = sa.select(USERS.c.tokens_valid_after).where(USERS.c.id == user_id)
        second = int(conn.execute(query).scalar_one().timestamp())

    def whole_seconds(iat: int) -> str:
        claims = {"sub": user_id, "iat": iat, "exp": iat + 600, "iss": "graphql-api"}
        return jwt.encode(claims, JWT_SECRET, algorithm="HS256")

    assert not await works(api, whole_seconds(second))
    assert await works(api, whole_seconds(second + 1))


async def test_the_cut_off_never_moves_back(api: Api, engine: sa.Engine) -> None:
    """A replica whose clock is behind cannot bring back tokens another one revoked."""
    account = await api.sign_up()
    _, user_id = decode_id(account.id)
    ahead = utcnow() + timedelta(seconds=20)
    with engine.begin() as conn:
        conn.execute(sa.update(USERS).where(USERS.c.id == user_id).values(tokens_valid_after=ahead))
    # A token issued before that cut-off (now): refused. Signing in, or changing the password,
    # on a clock that is behind it answers a token dated after it, which works.
    assert not await works(api, account.token)
    with engine.begin() as conn:
        assert repository.revoke_tokens(conn, user_id, utcnow()) == ahead
    tokens = api.app.state.services.tokens
    assert not await works(api, tokens.issue(user_id))
    assert await works(api, tokens.issue(user_id, after=ahead))
    assert await works(api, await token_of(api, account.email))
    changed = await change_password(api, await token_of(api, account.email), PASSWORD, PASSWORD)
    assert await works(api, changed.ok()["changePassword"]["token"])


async def test_statements_per_request_are_unchanged_by_the_cut_off(api: Api) -> None:
    """The check rides on the statement that checks the user exists: a request costs the same
    before and after a sign-out, and a revoked token costs that one statement only."""
    account = await api.sign_up()
    with api.count_statements() as before:
        (await api.execute(ME, as_user=account)).ok()
    (await api.execute(SIGN_OUT, as_user=account)).ok()
    fresh = await token_of(api, account.email)
    with api.count_statements() as after:
        (await api.execute(ME, token=fresh)).ok()
    with api.count_statements() as revoked:
        assert not await works(api, account.token)
    assert before.count == after.count == 2  # the user check, then the user
    assert revoked.count == 1


# --- deleteMe(password) ----------------------------------------------------------------------


def user_count(engine: sa.Engine, account: Account) -> int:
    _, user_id = decode_id(account.id)
    with engine.connect() as conn:
        query = sa.select(sa.func.count()).select_from(USERS).where(USERS.c.id == user_id)
        count: int = conn.execute(query).scalar_one()
    return count


@pytest.mark.parametrize(
    ("password", "message"), [(None, "enter your password"), ("wrong-password", "wrong")]
)
async def test_delete_me_needs_the_password_of_a_built_in_account(
    api: Api, engine: sa.Engine, password: str | None, message: str
) -> None:
    account = await api.sign_up()
    variables: dict[str, Any] = {} if password is None else {"p": password}
    refused = await api.execute(DELETE, variables, as_user=account)
    assert refused.codes == ["BAD_USER_INPUT"]
    assert refused.errors[0]["extensions"]["field"] == "password"
    assert message in refused.errors[0]["message"]
    assert refused.data == {"deleteMe": None}
    assert user_count(engine, account) == 1
    assert await works(api, account.token)

    assert (await api.execute(DELETE, {"p": PASSWORD}, as_user=account)).ok() == {"deleteMe": True}
    assert user_count(engine, account) == 0
    assert (await api.execute(ME, as_user=account)).codes == ["UNAUTHENTICATED"]


async def test_wrong_passwords_to_delete_me_are_throttled(strict: Api, engine: sa.Engine) -> None:
    account = await strict.sign_up()
    for _ in range(3):
        wrong = await strict.execute(DELETE, {"p": "wrong-password"}, as_user=account)
        assert wrong.codes == ["BAD_USER_INPUT"]
    blocked = await strict.execute(DELETE, {"p": PASSWORD}, as_user=account)
    assert blocked.codes == ["RATE_LIMITED"]
    assert user_count(engine, account) == 1


async def test_an_account_without_a_password_deletes_itself_without_one(
    api: Api, engine: sa.Engine
) -> None:
    """`graphql-api token --create` makes built-in accounts without a password."""
    from graphql_api.seed import token_for

    settings = api.app.state.services.settings
    token = token_for(settings, "cli-made@example.com", create=True)
    no_password = await api.execute(CHANGE, {"c": "anything-1", "n": "anything-2"}, token=token)
    assert no_password.codes == ["BAD_USER_INPUT"]
    assert no_password.errors[0]["extensions"]["field"] == "currentPassword"
    assert (await api.execute(DELETE, token=token)).ok() == {"deleteMe": True}
    assert (await api.execute(ME, token=token)).codes == ["UNAUTHENTICATED"]


# --- signUp and a taken email ----------------------------------------------------------------


async def test_sign_up_says_an_email_is_taken_but_probing_is_limited_per_address(
    backend: Backend,
) -> None:
    """The documented trade-off (docs/security.md): CONFLICT tells anyone an address has an
    account; the per-address sign-up limit bounds how many addresses one client can test."""
    sign_up = (
        'mutation($e: String!) { signUp(input: {email: $e, password: "password123"}) { token } }'
    )
    async with serve(make_settings(backend.app_url, sign_up_max_per_address=3)) as api:
        await api.sign_up("taken@example.com")
        taken = await api.execute(sign_up, {"e": "Taken@Example.com"})
        assert taken.codes == ["CONFLICT"]
        assert taken.errors[0]["extensions"]["field"] == "email"
        assert (await api.execute(sign_up, {"e": "free@example.com"})).ok()  # the third
        probe = await api.execute(sign_up, {"e": "taken@example.com"})
        assert probe.codes == ["RATE_LIMITED"]  # taken or not, the answer no longer says
