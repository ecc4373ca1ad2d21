"""Sign-up, sign-in and the user's own account."""

from __future__ import annotations

import asyncio
from typing import Annotated

import strawberry
from sqlalchemy.engine import RowMapping

from graphql_api import models
from graphql_api.context import Context, Info
from graphql_api.errors import Unauthenticated
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
    return AuthPayload(token=context.services.tokens.issue(row["id"]), user=User.from_row(row))


@strawberry.type
class UserMutations:
    @strawberry.mutation(description="Create an account and get a token for it.")
    async def sign_up(
        self,
        info: Info,
        input: Annotated[SignUpInput, strawberry.argument(description="The account.")],
    ) -> AuthPayload:
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
    ) -> AuthPayload:
        context = info.context
        settings = context.services.settings
        email = users.email_key(input.email)
        attempt = throttle.sign_in(settings, email, context.client_address)
        _, _, email_count = await context.db.write_public(
            throttle.count_attempt, throttle.sign_in_policy(settings), attempt.subjects
        )
        row = await context.db.read_public(users.find_user_by_email, email)
        if delay := throttle.slowdown(settings, email_count - 1):
            await context.db.close()  # no pooled connection held while waiting
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
    ) -> User:
        row = await info.context.write(
            users.update_user, given_fields(input), input.expected_updated_at
        )
        return User.from_row(row)

    @strawberry.mutation(
        description="Delete your account and everything you own, at once. Returns true."
    )
    async def delete_me(self, info: Info) -> bool:
        return await info.context.write(users.delete_user)
