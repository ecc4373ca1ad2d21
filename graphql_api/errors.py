"""The errors clients see. Each carries its `extensions.code`; anything else is masked.

The data layer raises these; graphql-core copies an exception's `extensions` onto the GraphQL
error it builds, and `graphql_api.schema` masks every error that is not one of them.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error meant for the client: its message and extensions are shown as they are."""

    code = "INTERNAL_SERVER_ERROR"

    def __init__(self, message: str, **extensions: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extensions: dict[str, Any] = {"code": self.code, **extensions}


class Unauthenticated(ApiError):
    """No valid token was presented."""

    code = "UNAUTHENTICATED"


class NotFound(ApiError):
    """Missing, or owned by someone else: the two are indistinguishable on purpose."""

    code = "NOT_FOUND"

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} not found.")


class BadUserInput(ApiError):
    """The input breaks a documented limit; `field` names the offending input field."""

    code = "BAD_USER_INPUT"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        if field is None:
            super().__init__(message)
        else:
            super().__init__(message, field=field)
        self.field = field


class Conflict(ApiError):
    """The input is valid but clashes with the current state (duplicate name, cycle, ...)."""

    code = "CONFLICT"


class CursorExpired(ApiError):
    """A change feed cursor (`since`) older than what the feed keeps, or not a position of the
    caller's feed: the client refetches what it shows, then reads the feed from the cursor that
    `changes` answers."""

    code = "CURSOR_EXPIRED"


class RateLimited(ApiError):
    """Too many attempts: `extensions.retryAfter` says in how many seconds to try again."""

    code = "RATE_LIMITED"


class ServiceUnavailable(ApiError):
    """A transient condition (no free database connection); retrying later may succeed."""

    code = "SERVICE_UNAVAILABLE"


def camel_case(name: str) -> str:
    """`due_date` -> `dueDate`: the GraphQL spelling of a Python field name."""
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)
