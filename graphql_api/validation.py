"""Input validation against the limits declared on the models, before any SQL is sent."""

from __future__ import annotations

import enum
import types
import typing
import uuid
from datetime import datetime
from typing import Any, TypeVar

from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from sqlalchemy.engine import RowMapping
from sqlmodel import SQLModel

from graphql_api.errors import BadUserInput, Conflict, camel_case

M = TypeVar("M", bound=SQLModel)

MAY_NOT_BE_NULL = "may not be null"

GRAPHQL_SCALARS: dict[Any, str] = {
    str: "a String",
    bool: "a Boolean",
    int: "an Int",
    float: "a Float",
    datetime: "a DateTime such as 2030-01-01T09:00:00Z",
    uuid.UUID: "an ID",
}


def validate(model: type[M], values: dict[str, Any]) -> M:
    """`model.model_validate(values)`, with the first failure reported as `BAD_USER_INPUT`.

    The error names the GraphQL input field (`dueDate`, not `due_date`) in `extensions.field`
    and says what is wrong in GraphQL's terms: "`title`: may not be null", not Pydantic's
    "Input should be a valid string".
    """
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        column = str(error["loc"][0]) if error["loc"] else None
        info = model.model_fields.get(column) if column is not None else None
        name = camel_case(column) if column is not None else None
        reason = _reason(error, info)
        if name is None:
            raise BadUserInput(f"{reason[:1].upper()}{reason[1:]}.") from None
        raise BadUserInput(f"`{name}`: {reason}.", field=name) from None


def _reason(error: ErrorDetails, info: FieldInfo | None) -> str:
    """Why a value was refused, as a GraphQL client understands it."""
    kind = error["type"]
    if kind == "missing":
        return "is required"
    if kind in ("value_error", "assertion_error"):  # the model's own validators: their words
        return error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if error.get("input") is None:
        return MAY_NOT_BE_NULL
    if info is not None and (
        kind in ("enum", "literal_error") or kind.endswith(("_type", "_parsing"))
    ):
        return f"must be {expected_value(info)}"
    return error["msg"]  # limits: "String should have at most 200 characters"


def accepts_null(info: FieldInfo) -> bool:
    """Whether a model field takes None (its annotation includes None)."""
    annotation = info.annotation
    return annotation is None or annotation is Any or type(None) in typing.get_args(annotation)


def expected_value(info: FieldInfo) -> str:
    """What a model field takes, in GraphQL's terms: "a String", "one of LOW, MEDIUM, HIGH"."""
    annotation = info.annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        annotation = next(arg for arg in typing.get_args(annotation) if arg is not type(None))
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "one of " + ", ".join(member.name for member in annotation)
    return GRAPHQL_SCALARS.get(annotation, "a value of its type")


def check_unchanged(current: RowMapping, expected_updated_at: datetime | None) -> None:
    """CONFLICT, with the current values, if the row changed since the client read it."""
    if expected_updated_at is not None and current["updated_at"] != expected_updated_at:
        raise Conflict(
            "It changed since you read it: nothing was written. "
            "Merge with `extensions.current` and send again.",
            field="expectedUpdatedAt",
            current={
                camel_case(name): _json(value)
                for name, value in current.items()
                if name not in PRIVATE_COLUMNS
            },
        )


PRIVATE_COLUMNS = frozenset({"user_id", "id", "password_hash", "tokens_valid_after"})


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def changes_of(model: type[M], current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Validate `current` with `changes` applied; return the changed fields, normalised."""
    editable = {name: current[name] for name in model.model_fields}
    merged = validate(model, {**editable, **changes})
    return {name: getattr(merged, name) for name in changes}
