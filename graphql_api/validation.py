"""Input validation against the limits declared on the models, before any SQL is sent."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any, TypeVar

from pydantic import ValidationError
from sqlalchemy.engine import RowMapping
from sqlmodel import SQLModel

from graphql_api.errors import BadUserInput, Conflict, camel_case

M = TypeVar("M", bound=SQLModel)


def validate(model: type[M], values: dict[str, Any]) -> M:
    """`model.model_validate(values)`, with the first failure reported as `BAD_USER_INPUT`.

    The error names the GraphQL input field (`dueDate`, not `due_date`) in `extensions.field`.
    """
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        name = camel_case(str(error["loc"][0])) if error["loc"] else None
        reason = error["msg"].removeprefix("Value error, ")
        raise BadUserInput(f"`{name}`: {reason}.", field=name) from None


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


PRIVATE_COLUMNS = frozenset({"user_id", "id", "password_hash"})


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
