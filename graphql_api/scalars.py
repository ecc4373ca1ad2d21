"""Scalars whose input rules are stricter than Strawberry's defaults.

A `DateTime` without a time zone (what an HTML `datetime-local` input sends) is ambiguous: it
is refused with `BAD_USER_INPUT` saying how to write it, instead of failing later in a
comparison with aware timestamps. Accepted values are converted to UTC here, so a value that
overflows on conversion (year 1 at +14:00) is refused at the door too.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from graphql import GraphQLError
from strawberry.types.scalar import scalar

DATETIME_EXAMPLE = "2030-01-01T09:00:00Z"


def _bad_datetime(value: object, reason: str) -> GraphQLError:
    return GraphQLError(
        f"DateTime {value!r} {reason}: write ISO 8601 with an offset or Z, "
        f"as in {DATETIME_EXAMPLE!r}.",
        extensions={"code": "BAD_USER_INPUT"},
    )


def parse_datetime(value: object) -> datetime:
    """An aware UTC datetime from ISO 8601 text with a time zone."""
    if not isinstance(value, str):
        raise _bad_datetime(value, "is not a string")
    try:
        parsed = datetime.fromisoformat(value)
    except (ValueError, OverflowError):
        raise _bad_datetime(value, "is not a date and time") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise _bad_datetime(value, "has no time zone")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise _bad_datetime(value, "is out of range in UTC") from None


def _serialize(value: datetime) -> str:
    return value.isoformat()


DateTime: Any = scalar(
    name="DateTime",
    description="A date and time in ISO 8601 with a time zone (an offset or Z), "
    f"as in {DATETIME_EXAMPLE}. Answers are in UTC.",
    serialize=_serialize,
    parse_value=parse_datetime,
)

SCALAR_OVERRIDES: dict[object, Any] = {datetime: DateTime}
"""Passed to the schema: every `datetime` field and argument uses the strict scalar."""
