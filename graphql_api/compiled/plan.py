"""Plans: what one validated operation selects, resolved once against the schema.

A plan is built with graphql-core's own field collection (`collect_fields`/`collect_subfields`),
so field merging, fragments, type conditions and `@skip`/`@include` mean exactly what they mean
to the reference executor. What collection depends on (the values of the variables used by
`@skip`/`@include`) is part of the plan's cache key, so a plan holds no condition to test at
run time. Each field is classified once: `__typename`, a plain attribute read (a Strawberry
field without a resolver), a Strawberry resolver called directly, or the field's GraphQL
resolver (anything else). Anything a plan cannot express raises `Unsupported`, and the
operation is left to the reference executor.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    DirectiveNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLAbstractType,
    GraphQLBoolean,
    GraphQLField,
    GraphQLID,
    GraphQLInt,
    GraphQLLeafType,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    GraphQLString,
    InlineFragmentNode,
    ListValueNode,
    ObjectValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValueNode,
    VariableNode,
    get_nullable_type,
    is_abstract_type,
    is_leaf_type,
    is_list_type,
    is_non_null_type,
    is_object_type,
)
from graphql.execution.collect_fields import (
    FieldDetails,
    FragmentDetails,
    collect_fields,
    collect_subfields,
)
from graphql.execution.values import VariableValues
from strawberry.schema.schema_converter import CustomGraphQLEnumType, GraphQLCoreConverter
from strawberry.types.field import StrawberryField

from graphql_api.compiled.batch import BatchFunction, batch_of

INTROSPECTION_FIELDS = frozenset({"__schema", "__type"})
GRAPHQL_MAX_INT = 2**31 - 1


class Unsupported(Exception):
    """The operation needs something a plan does not express: the reference path answers."""


class Kind(enum.IntEnum):
    """How a field's value is obtained."""

    TYPENAME = 0  # the parent's type name
    ATTRIBUTE = 1  # getattr(source, python_name): a Strawberry field without a resolver
    RESOLVER = 2  # a Strawberry resolver, called directly with converted arguments
    GENERIC = 3  # the GraphQL field's resolve function, called like graphql-core does


@dataclass(eq=False, slots=True)
class Shape:
    """What a field's value must look like: its GraphQL output type, compiled."""

    nonnull: bool


@dataclass(eq=False, slots=True)
class LeafShape(Shape):
    type_: GraphQLLeafType
    coerce: Callable[[Any], Any]
    exact: type | None = None
    """Values of exactly this Python type skip the coercion call: `str` for String and ID,
    `bool` for Boolean (returned unchanged), the Python enum of an enum type (see `names`)."""
    names: Mapping[Any, str] | None = None
    """Enum: the name the type's own coercion gives each member of its Python enum."""
    small_int: bool = False
    """Int: a plain `int` within 32 bits is returned unchanged."""


@dataclass(eq=False, slots=True)
class ListShape(Shape):
    item: Shape


@dataclass(eq=False, slots=True)
class ObjectShape(Shape):
    type_: GraphQLObjectType
    plan: TypePlan
    is_type_of: Callable[..., Any] | None
    is_type_of_takes_info: bool


@dataclass(eq=False, slots=True)
class AbstractShape(Shape):
    type_: GraphQLAbstractType
    objects: dict[str, ObjectShape]
    """The shape of each possible object type, by type name."""


@dataclass(eq=False, slots=True)
class FieldPlan:
    """One response key of an object: where its value comes from and what it must be."""

    key: str
    name: str
    parent_type: GraphQLObjectType
    details: list[FieldDetails]
    nodes: list[FieldNode]
    shape: Shape
    kind: Kind
    field_def: GraphQLField | None = None
    strawberry_field: StrawberryField | None = None
    python_name: str = ""
    resolver: Callable[..., Any] | None = None
    is_async: bool = False
    pass_source: bool = False
    """The resolver takes `self`: the parent object is its first positional argument."""
    source_kwargs: tuple[str, ...] = ()
    """Parameters (`root`, `strawberry.Parent`) that receive the parent object."""
    info_kwarg: str | None = None
    batch: BatchFunction | None = None
    """The resolver's per-level form (`graphql_api.compiled.batch`): called once with all the
    parent objects of a level instead of the resolver once per parent."""
    has_arguments: bool = False
    argument_variables: tuple[str, ...] = ()
    """The variables the field's arguments read: with the field's literals, all its converted
    arguments depend on."""
    converted: dict[tuple[Any, ...], dict[str, Any] | None] = field(default_factory=dict)
    """Converted arguments by the values of `argument_variables`, when they hold only
    immutable values: shared by every parent object, and every request (None: they hold
    input objects or lists, and each call converts its own)."""


@dataclass(eq=False, slots=True)
class TypePlan:
    """The fields selected on one object type at one place of the operation."""

    type_: GraphQLObjectType
    fields: tuple[FieldPlan, ...]
    template: dict[str, None] = field(init=False)
    """The object's response, every key in order and null: copied for each object."""

    def __post_init__(self) -> None:
        self.template = dict.fromkeys(f.key for f in self.fields)


@dataclass(eq=False, slots=True)
class Plan:
    operation: OperationDefinitionNode
    root: TypePlan


def directive_variables(
    operation: OperationDefinitionNode, fragments: Mapping[str, FragmentDefinitionNode]
) -> tuple[str, ...]:
    """The variables `@skip`/`@include` read anywhere in the operation: a plan depends on them."""
    names: set[str] = set()
    seen: set[str] = set()

    def visit(selection_set: SelectionSetNode | None) -> None:
        for selection in selection_set.selections if selection_set else ():
            names.update(_condition_variables(selection.directives or ()))
            if isinstance(selection, FieldNode | InlineFragmentNode):
                visit(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                if name not in seen and name in fragments:
                    seen.add(name)
                    visit(fragments[name].selection_set)

    visit(operation.selection_set)
    return tuple(sorted(names))


def _condition_variables(directives: Any) -> Iterator[str]:
    for directive in directives:
        if isinstance(directive, DirectiveNode) and directive.name.value in {"skip", "include"}:
            for argument in directive.arguments or ():
                if isinstance(argument.value, VariableNode):
                    yield argument.value.name.value


class PlanBuilder:
    """Builds the plan of one operation for one set of `@skip`/`@include` values."""

    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: dict[str, FragmentDetails],
        variable_values: VariableValues,
        operation: OperationDefinitionNode,
        *,
        hide_suggestions: bool,
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variable_values = variable_values
        self.operation = operation
        self.hide_suggestions = hide_suggestions
        strawberry_schema = getattr(schema, "_strawberry_schema", None)
        if strawberry_schema is None:
            raise Unsupported("not a Strawberry schema")
        converter = strawberry_schema.schema_converter
        # Exception handlers turn errors into values inside Strawberry's resolver wrapper:
        # with any configured, every resolver goes through that wrapper.
        self.direct_resolvers = not getattr(converter, "_exception_handler_specs", None)
        self.default_resolver = strawberry_schema.config.default_resolver

    def build(self) -> Plan:
        root_type = self.schema.get_root_type(self.operation.operation)
        if root_type is None:
            raise Unsupported("no root type for this operation")
        collected = collect_fields(
            self.schema,
            self.fragments,
            self.variable_values,
            root_type,
            self.operation,
            self.hide_suggestions,
        )
        if collected.new_defer_usages:
            raise Unsupported("@defer")
        return Plan(self.operation, self._type_plan(root_type, collected.grouped_field_set))

    def _type_plan(
        self, object_type: GraphQLObjectType, grouped: Mapping[str, list[FieldDetails]]
    ) -> TypePlan:
        fields = tuple(
            self._field_plan(object_type, key, details) for key, details in grouped.items()
        )
        return TypePlan(object_type, fields)

    def _subplan(self, object_type: GraphQLObjectType, details: list[FieldDetails]) -> TypePlan:
        collected = collect_subfields(
            self.schema,
            self.fragments,
            self.variable_values,
            self.operation,
            object_type,
            details,
            self.hide_suggestions,
        )
        if collected.new_defer_usages:
            raise Unsupported("@defer")
        return self._type_plan(object_type, collected.grouped_field_set)

    def _field_plan(
        self, parent_type: GraphQLObjectType, key: str, details: list[FieldDetails]
    ) -> FieldPlan:
        if any(d.defer_usage or d.fragment_variable_values for d in details):
            raise Unsupported("@defer or fragment variables")
        nodes = [d.node for d in details]
        name = nodes[0].name.value
        if name in INTROSPECTION_FIELDS:
            raise Unsupported("introspection")
        if name == "__typename":
            shape = self._leaf(GraphQLString, nonnull=True)
            return FieldPlan(key, name, parent_type, details, nodes, shape, Kind.TYPENAME)
        field_def = self.schema.get_field(parent_type, name)
        if field_def is None:
            raise Unsupported(f"unknown field {parent_type.name}.{name}")
        plan = FieldPlan(
            key,
            name,
            parent_type,
            details,
            nodes,
            self._shape(field_def.type, details),
            Kind.GENERIC,
            field_def=field_def,
            resolver=field_def.resolve,
            has_arguments=bool(field_def.args or nodes[0].arguments),
            argument_variables=_argument_variables(nodes[0]),
        )
        strawberry_field = (field_def.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
        if isinstance(strawberry_field, StrawberryField) and self.direct_resolvers:
            self._classify(plan, strawberry_field)
        return plan

    def _classify(self, plan: FieldPlan, strawberry_field: StrawberryField) -> None:
        """A Strawberry field without field extensions is resolved without Strawberry's
        per-call wrapper: what the wrapper does is done here once, or per call below."""
        if strawberry_field.extensions:
            return
        plan.strawberry_field = strawberry_field
        plan.python_name = strawberry_field.python_name
        resolver = strawberry_field.base_resolver
        if resolver is None:
            if self.default_resolver is getattr:
                plan.kind = Kind.ATTRIBUTE
            return
        if not callable(resolver.wrapped_func):
            return
        plan.kind = Kind.RESOLVER
        plan.resolver = resolver.wrapped_func
        plan.is_async = strawberry_field.is_async
        plan.pass_source = resolver.self_parameter is not None
        plan.source_kwargs = tuple(
            parameter.name
            for parameter in (resolver.parent_parameter, resolver.root_parameter)
            if parameter is not None
        )
        plan.info_kwarg = resolver.info_parameter.name if resolver.info_parameter else None
        if plan.is_async and plan.pass_source and not plan.source_kwargs:
            plan.batch = batch_of(resolver.wrapped_func)

    def _shape(self, type_: GraphQLOutputType, details: list[FieldDetails]) -> Shape:
        nonnull = is_non_null_type(type_)
        nullable = get_nullable_type(type_)
        if is_list_type(nullable):
            return ListShape(nonnull, self._shape(nullable.of_type, details))
        if is_leaf_type(nullable):
            return self._leaf(nullable, nonnull=nonnull)
        if is_object_type(nullable):
            return self._object(nullable, details, nonnull=nonnull)
        if is_abstract_type(nullable):
            possible = self.schema.get_possible_types(nullable)
            objects = {t.name: self._object(t, details, nonnull=nonnull) for t in possible}
            return AbstractShape(nonnull, nullable, objects)
        raise Unsupported(f"output type {nullable}")

    def _object(
        self, object_type: GraphQLObjectType, details: list[FieldDetails], *, nonnull: bool
    ) -> ObjectShape:
        is_type_of = object_type.is_type_of
        return ObjectShape(
            nonnull,
            object_type,
            self._subplan(object_type, details),
            is_type_of,
            is_type_of is not None and not _is_strawberry_is_type_of(is_type_of),
        )

    @staticmethod
    def _leaf(type_: GraphQLLeafType, *, nonnull: bool) -> LeafShape:
        shape = LeafShape(nonnull, type_, type_.coerce_output_value)
        if type_ is GraphQLString or type_ is GraphQLID:
            shape.exact = str
        elif type_ is GraphQLBoolean:
            shape.exact = bool
        elif type_ is GraphQLInt:
            shape.small_int = True
        elif isinstance(type_, CustomGraphQLEnumType):
            shape.exact = type_.wrapped_cls
            members: list[Any] = list(type_.wrapped_cls)
            shape.names = {member: type_.coerce_output_value(member) for member in members}
        return shape


def _argument_variables(node: FieldNode) -> tuple[str, ...]:
    names: list[str] = []

    def visit(value: ValueNode) -> None:
        if isinstance(value, VariableNode):
            names.append(value.name.value)
        elif isinstance(value, ListValueNode):
            for item in value.values:
                visit(item)
        elif isinstance(value, ObjectValueNode):
            for object_field in value.fields:
                visit(object_field.value)

    for argument in node.arguments or ():
        visit(argument.value)
    return tuple(sorted(set(names)))


def _is_strawberry_is_type_of(function: Callable[..., Any]) -> bool:
    """Strawberry's generated `is_type_of` ignores its `info` argument."""
    return function.__module__ == GraphQLCoreConverter.__module__ and function.__name__ == (
        "is_type_of"
    )
