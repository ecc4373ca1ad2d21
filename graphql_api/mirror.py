"""Strawberry types that mirror SQLModel tables: one source of truth for columns and types.

`@mirror(models.Task, exclude={...})` adds one GraphQL field per column, typed and described as
the model declares it. Every column is either mirrored or excluded with a reason, in one visible
place next to the type, so a column added to a table shows up in the API unless excluded.
Input types mirror the `...Fields` models the same way, so limits and descriptions live once.
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar, dataclass_transform

import strawberry
from pydantic.fields import FieldInfo
from sqlalchemy.engine import RowMapping
from sqlmodel import SQLModel

from graphql_api.errors import BadUserInput, camel_case
from graphql_api.relay import encode_id
from graphql_api.sql import Record
from graphql_api.validation import MAY_NOT_BE_NULL, accepts_null

C = TypeVar("C", bound=type)
E = TypeVar("E")
Kind = Literal["output", "input", "patch"]


def _field(info: FieldInfo, kind: Kind) -> tuple[Any, Any]:
    """(annotation, strawberry field) of one model field."""
    if kind == "output":
        return info.annotation, strawberry.field(description=info.description)
    if kind == "patch":  # every field optional; absent fields are UNSET, not None
        return info.annotation | None, strawberry.field(  # type: ignore[operator]
            description=info.description, default=strawberry.UNSET
        )
    if info.is_required():
        return info.annotation, strawberry.field(description=info.description)
    return info.annotation, strawberry.field(description=info.description, default=info.default)


@dataclass_transform(kw_only_default=True, field_specifiers=(strawberry.field,))
def mirror(
    model: type[SQLModel],
    *,
    exclude: Mapping[str, str] | None = None,
    kind: Kind = "output",
    description: str | None = None,
) -> Callable[[C], C]:
    """Make the decorated class the Strawberry type (or input) mirroring `model`.

    `exclude` maps a column to why it is not mirrored as is (private, or exposed by a field the
    class body writes itself). Fields declared in the class body win over mirrored ones.
    """
    exclude = exclude or {}
    unknown = set(exclude) - set(model.model_fields)
    if unknown:
        raise ValueError(f"{model.__name__} has no columns {sorted(unknown)}")

    def decorate(cls: C) -> C:
        declared = dict(inspect.get_annotations(cls))
        mirrored: dict[str, Any] = {}
        for name, info in model.model_fields.items():
            if name in exclude or name in declared or name in cls.__dict__:
                continue
            mirrored[name], default = _field(info, kind)
            setattr(cls, name, default)
        # Mirrored fields first: required inputs before optional ones, as in the model.
        cls.__annotations__ = {**mirrored, **declared}
        cls.__mirrored_columns__ = tuple(mirrored)  # type: ignore[attr-defined]
        cls.__mirrored_model__ = model  # type: ignore[attr-defined]
        cls.__excluded_columns__ = dict(exclude)  # type: ignore[attr-defined]
        if kind == "output" and hasattr(model, "__table__"):
            columns = list(model.__table__.columns.keys())
            cls.__from_record__ = _record_constructor(cls, columns, mirrored)  # type: ignore[attr-defined]
        text = description or (model.__doc__ or "").strip()
        if kind == "output":
            return strawberry.type(cls, description=text)
        return strawberry.input(cls, description=text)

    return decorate


def mirrored_values(cls: type, row: RowMapping) -> dict[str, Any]:
    """The mirrored columns of a row, as keyword arguments for the Strawberry type `cls`."""
    return {name: row[name] for name in cls.__mirrored_columns__}  # type: ignore[attr-defined]


def node_values(cls: type, row: RowMapping) -> dict[str, Any]:
    """Keyword arguments for an entity type from its row: the opaque global `id` (named after
    the type), the raw id kept private as `row_id`, and the mirrored columns."""
    return {
        "id": encode_id(cls.__name__, row["id"]),
        "row_id": row["id"],
        **mirrored_values(cls, row),
    }


def from_record(cls: type[E], row: Record, **computed: Any) -> E:
    """An entity of type `cls` from a record of its table (the columns by position, as the
    data layer reads them; columns after the table's are ignored): the opaque global `id`,
    the raw id kept private as `row_id`, the mirrored columns, and `computed` fields."""
    entity: E = cls.__from_record__(row, computed)  # type: ignore[attr-defined]
    return entity


def _record_constructor(
    cls: type, columns: list[str], mirrored: Mapping[str, Any]
) -> Callable[[Record, dict[str, Any]], Any]:
    """`from_record` for one type, written out once: every column read by its position and
    passed by name, without an intermediate dict per row (the lists of a page build dozens
    of objects, so the generic version cost more than the rest of the data layer)."""
    row_id = columns.index("id")
    fields = ", ".join(f"{name}=row[{columns.index(name)}]" for name in mirrored)
    source = (
        "lambda row, computed: cls("
        f"id=encode_id(type_name, row[{row_id}]), row_id=row[{row_id}], {fields}, **computed)"
    )
    namespace = {"cls": cls, "encode_id": encode_id, "type_name": cls.__name__}
    constructor: Callable[[Record, dict[str, Any]], Any] = eval(source, namespace)  # noqa: S307
    return constructor


def given_fields(value: object) -> dict[str, Any]:
    """The fields of an input that the client actually sent (UNSET ones left out).

    An explicit null for a column that cannot be null is BAD_USER_INPUT naming the field, before
    any SQL: every field of a patch input is optional, so GraphQL itself lets a null through."""
    model: type[SQLModel] = type(value).__mirrored_model__  # type: ignore[attr-defined]
    given: dict[str, Any] = {}
    for name in type(value).__mirrored_columns__:  # type: ignore[attr-defined]
        field_value = getattr(value, name)
        if field_value is strawberry.UNSET:
            continue
        if field_value is None and not accepts_null(model.model_fields[name]):
            field = camel_case(name)
            raise BadUserInput(
                f"`{field}`: {MAY_NOT_BE_NULL}; leave it out to keep the current value.",
                field=field,
            )
        given[name] = field_value
    return given


def describe_enum(
    enum_cls: type[enum.Enum], description: str, values: Mapping[enum.Enum, str]
) -> None:
    """Register a model's enum as a GraphQL enum, with a description on every value."""
    missing = set(enum_cls) - set(values)
    if missing:
        raise ValueError(f"{enum_cls.__name__}: describe {sorted(m.name for m in missing)}")
    strawberry.enum(enum_cls, description=description)
    definition = enum_cls.__strawberry_definition__  # type: ignore[attr-defined]
    for value in definition.values:
        value.description = values[enum_cls[value.name]]
