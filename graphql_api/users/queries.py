"""Read operations of the users domain."""

from __future__ import annotations

import strawberry

from graphql_api.context import Info
from graphql_api.users import repository as users
from graphql_api.users.types import User


@strawberry.type
class UserQueries:
    @strawberry.field(description="The signed-in user.")
    async def me(self, info: Info) -> User:
        return User.from_row(await info.context.db.read(users.get_user))
