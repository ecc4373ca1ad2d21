"""What a resolver's `info` sees on the compiled path, built only for resolvers that ask.

`CompiledResolveInfo` answers every attribute of graphql-core's `GraphQLResolveInfo` (and the
`operation_extensions` Strawberry adds), computing the path only when it is read: most
resolvers read `info.context` and nothing else, and building graphql-core's `Path` chain for
every call is part of what the compiled path saves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    OperationDefinitionNode,
)
from graphql.pyutils import Path

if TYPE_CHECKING:
    from graphql_api.compiled.plan import FieldPlan
    from graphql_api.compiled.run import Position, Run


def path_of(position: Position | None) -> Path | None:
    """graphql-core's linked path to the container `position` (None for the root)."""
    if position is None or position.parent is None:
        return None
    parent = position.parent
    return Path(path_of(parent), position.key, parent.typename)


def path_list(position: Position, key: str | int) -> list[str | int]:
    """The response path of slot `key` of the container at `position`, as errors show it."""
    keys: list[str | int] = [key]
    while position.parent is not None:
        keys.append(position.key)
        position = position.parent
    keys.reverse()
    return keys


class CompiledResolveInfo:
    """A `GraphQLResolveInfo` look-alike for one field of one parent object."""

    __slots__ = ("_field", "_position", "_run")

    def __init__(self, run: Run, field: FieldPlan, position: Position) -> None:
        self._run = run
        self._field = field
        self._position = position

    @property
    def field_name(self) -> str:
        return self._field.name

    @property
    def field_nodes(self) -> list[FieldNode]:
        return self._field.nodes

    @property
    def return_type(self) -> GraphQLOutputType:
        field_def = self._field.field_def
        assert field_def is not None
        return field_def.type

    @property
    def parent_type(self) -> GraphQLObjectType:
        return self._field.parent_type

    @property
    def path(self) -> Path:
        position = self._position
        return Path(path_of(position), self._field.key, position.typename)

    @property
    def schema(self) -> GraphQLSchema:
        return self._run.executor.schema

    @property
    def fragments(self) -> dict[str, FragmentDefinitionNode]:
        return self._run.executor.fragment_definitions

    @property
    def root_value(self) -> Any:
        return self._run.executor.root_value

    @property
    def operation(self) -> OperationDefinitionNode:
        return self._run.executor.operation

    @property
    def variable_values(self) -> dict[str, Any]:
        # What Strawberry's executor gives resolvers: the plain coerced dict.
        return self._run.executor.variable_values.coerced

    @property
    def context(self) -> Any:
        return self._run.executor.context_value

    @property
    def is_awaitable(self) -> Any:
        return self._run.executor.is_awaitable

    @property
    def abort_signal(self) -> Any:
        return self._run.executor.abort_signal

    @property
    def async_helpers(self) -> Any:
        return self._run.executor.async_helpers

    @property
    def operation_extensions(self) -> Any:
        return getattr(self._run.executor, "operation_extensions", None)
