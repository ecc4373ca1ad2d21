"""Sign-up, sign-in and the user's own account."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated

import strawberry
from sqlalchemy.engine import Connection, RowMapping

from graphql_api import models
from graphql_api.context import Context, Info
from graphql_api.errors import BadUserInput, Unauthenticated
from graphql_api.mirror import given_fields, mirror
from graphql_api.relay import GuardedUpdate
from graphql_api.users import repository as users
from graphql_api.users import throttle
from graphql_api.users.types import AuthPayload, User


@strawberry.input(description="A new account.")
class SignUpInput:
    email: str = strawberry.field(description="Unique ignoring case; stored lower-cased.")
    password: str = strawberry.field(description="At least 8 characters.")
    name: str = strawberry.field(default="", description="A display name.")


@strawberry.input(description="The credentials of an account.")
class SignInInput:
    email: str = strawberry.field(description="The account's email, in any case.")
    password: str = strawberry.field(description="The account's password.")


@mirror(models.UserFields, kind="patch", description="Changes to your account: absent fields stay.")
class UpdateMeInput(GuardedUpdate):
    pass


WRONG_CREDENTIALS = "Wrong email or password."


def _payload(context: Context, row: RowMapping) -> AuthPayload:
    token = context.services.tokens.issue(row["id"], after=row["tokens_valid_after"])
    return AuthPayload(token=token, user=User.from_row(row))


@dataclass(frozen=True)
class CheckedPassword:
    """The signed-in user's password, checked: its hash (None: the account has none) and the
    throttled attempt to clear once the change it allows is written."""

    password_hash: str | None
    attempt: throttle.SignIn | None

    def succeeded(self, conn: Connection) -> None:
        if self.attempt is not None:
            throttle.succeeded(conn, self.attempt)


async def _check_own_password(
    context: Context, password: str | None, field: str
) -> CheckedPassword:
    """Check the password of the signed-in user's account, throttled exactly like a sign-in
    with its email from this address (the same counters: a stolen token cannot guess the
    password here faster than at `signIn`). A wrong or missing password is BAD_USER_INPUT on
    `field`: the token is fine, and UNAUTHENTICATED would make clients drop the session."""
    settings = context.services.settings
    address = context.client_address

    def count(conn: Connection, user_id: str) -> tuple[RowMapping, throttle.SignIn | None, int]:
        row = users.credentials(conn, user_id)
        if row["password_hash"] is None:  # an identity provider's user, or made by the CLI
            return row, None, 0
        if password is None:
            raise BadUserInput(f"`{field}`: enter your password.", field=field)
        attempt = throttle.sign_in(settings, users.email_key(row["email"]), address)
        policy = throttle.password_policy(settings)
        _, _, email_count = throttle.count_attempt(conn, policy, attempt.subjects)
        return row, attempt, email_count

    row, attempt, email_count = await context.db.write(count)
    if attempt is None:
        return CheckedPassword(None, None)
    assert password is not None
    if delay := throttle.slowdown(settings, email_count - 1):
        await context.db.release()  # no pooled connection held while waiting
        await asyncio.sleep(delay)
    if not await context.services.passwords.verify_async(row["password_hash"], password):
        raise BadUserInput(f"`{field}`: wrong password.", field=field)
    return CheckedPassword(row["password_hash"], attempt)


@strawberry.type
class UserMutations:
    @strawberry.mutation(description="Create an account and get a token for it.")
    async def sign_up(
        self,
        info: Info,
        input: Annotated[SignUpInput, strawberry.argument(description="The account.")],
    ) -> AuthPayload | None:
        context = info.context
        settings = context.services.settings
        passwords = context.services.passwords
        passwords.check_strength(input.password)
        email = users.normalise_email(input.email)
        # Counted before hashing, so a flood from one address costs one statement each.
        await context.db.write_public(
            throttle.count_attempt,
            throttle.sign_up_policy(settings),
            [throttle.sign_up(settings, context.client_address)],
        )
        password_hash = await passwords.hash_async(input.password)
        row = await context.db.write_public(
            users.create_user, email=email, name=input.name, password_hash=password_hash
        )
        return _payload(context, row)

    @strawberry.mutation(
        description="Exchange an email and password for a token. "
        "A wrong email and a wrong password get the same error."
    )
    async def sign_in(
        self,
        info: Info,
        input: Annotated[SignInInput, strawberry.argument(description="The credentials.")],
    ) -> AuthPayload | None:
        context = info.context
        settings = context.services.settings
        email = users.email_key(input.email)
        attempt = throttle.sign_in(settings, email, context.client_address)
        _, _, email_count = await context.db.write_public(
            throttle.count_attempt, throttle.sign_in_policy(settings), attempt.subjects
        )
        row = await context.db.read_public(users.find_user_by_email, email)
        if delay := throttle.slowdown(settings, email_count - 1):
            await context.db.release()  # no pooled connection held while waiting
            await asyncio.sleep(delay)
        password_hash = row["password_hash"] if row is not None else None
        verified = await context.services.passwords.verify_async(password_hash, input.password)
        if row is None or not verified:
            raise Unauthenticated(WRONG_CREDENTIALS)
        await context.db.write_public(throttle.succeeded, attempt)
        return _payload(context, row)

    @strawberry.mutation(description="Change your account.")
    async def update_me(
        self,
        info: Info,
        input: Annotated[UpdateMeInput, strawberry.argument(description="The changes.")],
    ) -> User | None:
        row = await info.context.write(
            users.update_user, given_fields(input), input.expected_updated_at
        )
        return User.from_row(row)

    @strawberry.mutation(
        description="Set a new password. Every token issued before it stops working, on every "
        "device, the one sending this included; the answer carries a fresh one. A wrong or "
        "missing `currentPassword` is BAD_USER_INPUT and counts as a failed sign-in. Accounts "
        "of an identity provider have no password here: change it at the provider."
    )
    async def change_password(
        self,
        info: Info,
        current_password: Annotated[
            str, strawberry.argument(description="The password the account has now.")
        ],
        new_password: Annotated[
            str, strawberry.argument(description="The new password: at least 8 characters.")
        ],
    ) -> AuthPayload | None:
        context = info.context
        passwords = context.services.passwords
        passwords.check_strength(new_password, field="newPassword")
        checked = await _check_own_password(context, current_password, "currentPassword")
        current_hash = checked.password_hash
        if current_hash is None:
            raise BadUserInput(
                "`currentPassword`: this account has no password to change (it signs in "
                "through an identity provider).",
                field="currentPassword",
            )
        new_hash = await passwords.hash_async(new_password)

        def change(conn: Connection, user_id: str) -> RowMapping:
            row = users.change_password(conn, user_id, current_hash, new_hash, models.utcnow())
            checked.succeeded(conn)
            return row

        return _payload(context, await context.write(change))

    @strawberry.mutation(
        description="Sign out on every device: every token issued before now stops working, "
        "the one sending this included. Sign in again for a new one. Returns true."
    )
    async def sign_out_everywhere(self, info: Info) -> bool | None:
        await info.context.write(users.revoke_tokens, models.utcnow())
        return True

    @strawberry.mutation(
        description="Delete your account and everything you own, at once. Returns true. "
        "An account with a password must give it: BAD_USER_INPUT when missing or wrong (a "
        "wrong one counts as a failed sign-in)."
    )
    async def delete_me(
        self,
        info: Info,
        password: Annotated[
            str | None,
            strawberry.argument(
                description="The account's password. Accounts of an identity provider have "
                "none here: omit it (one given is not checked)."
            ),
        ] = None,
    ) -> bool | None:
        context = info.context
        checked = await _check_own_password(context, password, "password")

        def delete(conn: Connection, user_id: str) -> bool:
            deleted = users.delete_user(conn, user_id)
            checked.succeeded(conn)
            return deleted

        return await context.write(delete)
