"""Breadth-first execution of a plan: one pass per field over all the objects that need it.

The response is written in place. Every object and list of the response gets a `Position`
(its container, where it sits in its parent, whether that slot is non-null), which is all a
field error needs for its path and for nulling the nearest nullable parent.

Execution goes in waves. A wave runs every synchronous resolver and attribute read it can
reach, across all depths, and collects the awaitables of the asynchronous resolvers; the
wave's awaitables are then awaited together, so dataloaders batch at least as much as under
graphql-core, which also starts every load it can reach before it waits.

Errors: with at most one field error, the reference executor's answer does not depend on
timing (the data with the error's nearest nullable parent nulled, and that one error). With
two or more, graphql-core's answer does: it reports errors in the order they happen and
cancels the siblings of an error that propagates, so which errors appear, and in which order,
follows the event loop's schedule, which a breadth-first executor does not reproduce. So a
second error ends the compiled attempt (`Bail`) and the reference executor answers instead.
Work under an already nulled parent still runs, so that any error the reference could meet
there is met here too.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import date, time
from decimal import Decimal
from inspect import isawaitable
from types import CoroutineType, GeneratorType, NoneType
from typing import Any

from graphql import ExecutionResult, GraphQLError, located_error
from graphql.execution.executor import Executor, invalid_return_type_error
from graphql.execution.values import get_argument_values
from graphql.pyutils import Undefined, is_iterable
from strawberry.types.arguments import convert_arguments
from strawberry.types.info import Info

from graphql_api.compiled.info import CompiledResolveInfo, path_list
from graphql_api.compiled.plan import (
    AbstractShape,
    FieldPlan,
    Kind,
    LeafShape,
    ListShape,
    ObjectShape,
    Plan,
    Shape,
    TypePlan,
)

log = logging.getLogger(__name__)

GRAPHQL_MIN_INT = -(2**31)
GRAPHQL_MAX_INT = 2**31 - 1
IMMUTABLE = (str, int, float, NoneType, enum.Enum, date, time, uuid.UUID, Decimal)
MAX_CONVERTED = 32
"""Argument variants kept per field of a plan."""
_MISSING = object()  # a variable the request does not give (not the same as null)
_NEVER_AWAITABLE: set[type] = {str, int, float, bool, dict, list, tuple}

Children = dict[TypePlan, list["Position"]]
Pending = tuple[FieldPlan, "Position | list[Position]", Awaitable[Any]]
"""A resolver's awaitable for one parent object, or a batch function's for a level's parents."""


class Bail(BaseException):
    """The compiled attempt cannot give the reference executor's answer: give up, unwind.

    A BaseException so that the `except Exception` around each resolver, which turns a
    resolver's failure into a field error, does not catch it."""


class Position:
    """An object or list of the response: its container and the slot it fills in its parent."""

    __slots__ = ("key", "nonnull", "parent", "source", "typename", "value")

    def __init__(
        self,
        value: Any,
        source: Any,
        parent: Position | None,
        key: str | int,
        nonnull: bool,
        typename: str | None,
    ) -> None:
        self.value = value  # the response dict of an object, the response list of a list
        self.source = source  # the object resolvers get as their parent
        self.parent = parent
        self.key = key
        self.nonnull = nonnull  # the slot this container fills must not be null
        self.typename = typename  # the object's type name; None for lists


class Run:
    """One execution of a plan for one request."""

    def __init__(self, executor: Executor[Any], plan: Plan) -> None:
        self.executor = executor
        self.is_awaitable = executor.is_awaitable
        strawberry_schema = executor.schema._strawberry_schema  # type: ignore[attr-defined]
        self.config = strawberry_schema.config
        self.scalar_registry = strawberry_schema.schema_converter.scalar_registry
        self.error: GraphQLError | None = None
        self.queue: deque[tuple[TypePlan, list[Position]]] = deque()
        self.pending: list[Pending] = []
        root = plan.root
        self.root = Position(
            root.template.copy(), executor.root_value, None, "", False, root.type_.name
        )
        self.data: dict[str, Any] | None = self.root.value
        self.queue.append((root, [self.root]))

    # Driving the waves

    def start(self) -> ExecutionResult | Awaitable[ExecutionResult | None] | None:
        """The result, an awaitable of it, or None when the reference executor must answer."""
        try:
            self._drain()
        except Bail:
            self._discard_pending()
            return None
        except Exception:  # a bug of this path (resolvers' errors are field errors)
            log.exception("Compiled execution failed: graphql-core answers instead")
            self._discard_pending()
            return None
        if self.pending:
            return self._waves()
        return self._result()

    async def _waves(self) -> ExecutionResult | None:
        try:
            while self.pending:
                pending, self.pending = self.pending, []
                outcomes = await _settle([awaitable for _, _, awaitable in pending])
                self._complete_pending(pending, outcomes)
                self._drain()
        except Bail:
            self._discard_pending()
            return None
        except Exception:
            log.exception("Compiled execution failed: graphql-core answers instead")
            self._discard_pending()
            return None
        return self._result()

    def _drain(self) -> None:
        queue = self.queue
        while queue:
            plan, objects = queue.popleft()
            self._run_batch(plan, objects)

    def _result(self) -> ExecutionResult:
        return ExecutionResult(self.data, [self.error] if self.error is not None else None)

    def _discard_pending(self) -> None:
        """Close the coroutines created but not started yet: nothing ran, nothing to await."""
        for _, _, awaitable in self.pending:
            close = getattr(awaitable, "close", None)
            if close is not None:
                close()
        self.pending = []

    def _enqueue(self, children: Children) -> None:
        self.queue.extend(children.items())

    # One field over all the objects of a batch

    def _run_batch(self, plan: TypePlan, objects: list[Position]) -> None:
        children: Children = {}
        for field in plan.fields:
            kind = field.kind
            if kind is Kind.ATTRIBUTE:
                self._read_attributes(field, objects, children)
            elif kind is Kind.TYPENAME:
                key, name = field.key, plan.type_.name
                for position in objects:
                    position.value[key] = name
            else:
                self._call_resolvers(field, objects, children)
        self._enqueue(children)

    def _read_attributes(
        self, field: FieldPlan, objects: list[Position], children: Children
    ) -> None:
        name, key, shape = field.python_name, field.key, field.shape
        exact = shape.exact if isinstance(shape, LeafShape) and shape.names is None else None
        for position in objects:
            try:
                value = getattr(position.source, name)
                if type(value) is exact:  # the common case: a str or bool column
                    position.value[key] = value
                else:
                    self._complete(shape, value, field, position, position, key, children)
            except Exception as error:  # a field error: located, nulled, reported
                self._slot_error(error, field, position, key, shape.nonnull)

    def _call_resolvers(
        self, field: FieldPlan, objects: list[Position], children: Children
    ) -> None:
        if field.batch is None or not self._call_batch(field, objects):
            self._call_each(field, objects, children)

    def _call_each(self, field: FieldPlan, objects: list[Position], children: Children) -> None:
        """Call the field's resolver once per parent object."""
        key, shape = field.key, field.shape
        call = self._caller(field)
        awaitable = self.is_awaitable
        for position in objects:
            try:
                result = call(position)
                if field.is_async or awaitable(result):
                    self.pending.append((field, position, result))
                else:
                    self._complete(shape, result, field, position, position, key, children)
            except Exception as error:
                self._slot_error(error, field, position, key, shape.nonnull)

    def _call_batch(self, field: FieldPlan, objects: list[Position]) -> bool:
        """Start the field's batch function for all of `objects`; False if the resolver must
        be called for each instead (its arguments cannot be shared, or the call failed: each
        resolver call reports its own error)."""
        assert field.batch is not None
        try:
            arguments = self._shared_arguments(field) if field.has_arguments else {}
            if arguments is None:
                return False
            sources = [position.source for position in objects]
            awaitable = field.batch(sources, self.executor.context_value, **arguments)
        except Exception:
            return False
        self.pending.append((field, objects, awaitable))
        return True

    def _complete_batch(
        self, field: FieldPlan, objects: list[Position], outcome: Any, children: Children
    ) -> None:
        """Complete a batch function's values, one per parent; if it failed, call the resolver
        for each parent instead (in the next wave), so errors are exactly the resolver's."""
        if (
            isinstance(outcome, Exception)
            or not isinstance(outcome, list | tuple)
            or len(outcome) != len(objects)
        ):
            self._call_each(field, objects, children)
            return
        key, shape = field.key, field.shape
        for position, value in zip(objects, outcome, strict=True):
            try:  # an exception as value stands for the one the resolver would raise
                self._complete(shape, value, field, position, position, key, children)
            except Exception as error:
                self._slot_error(error, field, position, key, shape.nonnull)

    def _complete_pending(self, pending: list[Pending], outcomes: list[Any]) -> None:
        children: Children = {}
        for (field, position, _), outcome in zip(pending, outcomes, strict=True):
            if isinstance(position, list):
                self._complete_batch(field, position, outcome, children)
                continue
            key, shape = field.key, field.shape
            try:  # an exception as outcome is raised by _complete, like a returned one
                self._complete(shape, outcome, field, position, position, key, children)
            except Exception as error:
                self._slot_error(error, field, position, key, shape.nonnull)
        self._enqueue(children)

    # Calling resolvers

    def _caller(self, field: FieldPlan) -> Callable[[Position], Any]:
        """A function resolving `field` for one parent object, made once per batch."""
        if field.kind is not Kind.RESOLVER:
            return lambda position: self._call_generic(field, position)
        resolver = field.resolver
        assert resolver is not None
        try:
            shared = self._shared_arguments(field) if field.has_arguments else {}
        except Exception as error:  # every call would fail alike: each raises it
            failure = error

            def fail(_: Position) -> Any:
                raise failure

            return fail
        if shared is None:
            return lambda position: self._call_converting(field, position)
        sources, info_kwarg, pass_source = field.source_kwargs, field.info_kwarg, field.pass_source
        make_info = self._info

        def call(position: Position) -> Any:
            # What Strawberry passes: converted arguments, then the parent and `info` under
            # the names the resolver gives them.
            kwargs = dict(shared)
            for name in sources:
                kwargs[name] = position.source
            if info_kwarg is not None:
                kwargs[info_kwarg] = make_info(field, position)
            if pass_source:
                return resolver(position.source, **kwargs)
            return resolver(**kwargs)

        return call

    def _call_converting(self, field: FieldPlan, position: Position) -> Any:
        """A resolver whose arguments hold input objects or lists: each call gets its own."""
        assert field.resolver is not None
        info = self._info(field, position)
        kwargs = self._convert_arguments(field, info)
        for name in field.source_kwargs:
            kwargs[name] = position.source
        if field.info_kwarg is not None:
            kwargs[field.info_kwarg] = info
        if field.pass_source:
            return field.resolver(position.source, **kwargs)
        return field.resolver(**kwargs)

    def _call_generic(self, field: FieldPlan, position: Position) -> Any:
        """Anything else: the GraphQL field's resolver, called as graphql-core calls it."""
        info = CompiledResolveInfo(self, field, position)
        arguments = self._graphql_arguments(field)
        resolve = field.resolver or self.executor.field_resolver
        return resolve(position.source, info, **arguments)

    def _shared_arguments(self, field: FieldPlan) -> dict[str, Any] | None:
        """Converted arguments all parents can share, or None if each call must convert its
        own (input objects and lists: a resolver could change them). Made of immutable values
        only, they depend on nothing but the variables the field reads, so they are kept on
        the plan for the next requests too."""
        coerced = self.executor.variable_values.coerced
        key = tuple(coerced.get(name, _MISSING) for name in field.argument_variables)
        try:
            if key in field.converted:
                return field.converted[key]
        except TypeError:  # a list or an input object in a variable
            return None
        converted: dict[str, Any] | None = self._convert_arguments(field, None)
        assert converted is not None
        if not all(isinstance(value, IMMUTABLE) for value in converted.values()):
            converted = None  # an input object or a list, given literally
        if len(field.converted) < MAX_CONVERTED:
            field.converted[key] = converted
        return converted

    def _convert_arguments(self, field: FieldPlan, info: Info[Any, Any] | None) -> dict[str, Any]:
        assert field.strawberry_field is not None
        return convert_arguments(
            self._graphql_arguments(field),
            field.strawberry_field.arguments,
            scalar_registry=self.scalar_registry,
            config=self.config,
            info=info,
        )

    def _graphql_arguments(self, field: FieldPlan) -> dict[str, Any]:
        if not field.has_arguments:
            return {}
        assert field.field_def is not None
        executor = self.executor
        return get_argument_values(
            field.field_def,
            field.nodes[0],
            executor.variable_values,
            None,
            executor.hide_suggestions,
        )

    def _info(self, field: FieldPlan, position: Position) -> Info[Any, Any]:
        assert field.strawberry_field is not None
        raw = CompiledResolveInfo(self, field, position)
        info: Info[Any, Any] = self.config.info_class(
            _raw_info=raw,
            _field=field.strawberry_field,
        )
        return info

    # Completing values: the rules of graphql-core's complete_value, writing in place

    def _complete(
        self,
        shape: Shape,
        value: Any,
        field: FieldPlan,
        owner: Position,
        container: Position,
        key: str | int,
        children: Children,
    ) -> None:
        """Write `value`, completed to `shape`, into slot `key` of `container` (a slot of
        `field` of the object at `owner`); raise what makes it a field error."""
        if isinstance(value, Exception):
            raise value
        if value is None or value is Undefined:
            if shape.nonnull:
                raise TypeError(
                    f"Cannot return null for non-nullable field {field.parent_type.name}."
                    f"{field.name}."
                )
            return  # slots start out null
        kind = type(shape)
        if kind is LeafShape:
            container.value[key] = self._leaf(shape, value)  # type: ignore[arg-type]
        elif kind is ObjectShape:
            self._object(shape, value, field, owner, container, key, children)  # type: ignore[arg-type]
        elif kind is ListShape:
            self._list(shape, value, field, owner, container, key, children)  # type: ignore[arg-type]
        else:
            self._abstract(shape, value, field, owner, container, key, children)  # type: ignore[arg-type]

    @staticmethod
    def _leaf(shape: LeafShape, value: Any) -> Any:
        if type(value) is shape.exact:
            return value if shape.names is None else shape.names[value]
        if shape.small_int and type(value) is int and GRAPHQL_MIN_INT <= value <= GRAPHQL_MAX_INT:
            return value
        coerced = shape.coerce(value)
        if coerced is None or coerced is Undefined:  # graphql-core words the error
            return Executor.complete_leaf_value(shape.type_, value)
        return coerced

    def _object(
        self,
        shape: ObjectShape,
        value: Any,
        field: FieldPlan,
        owner: Position,
        container: Position,
        key: str | int,
        children: Children,
    ) -> None:
        is_type_of = shape.is_type_of
        if is_type_of is not None:
            info = CompiledResolveInfo(self, field, owner) if shape.is_type_of_takes_info else None
            matches = is_type_of(value, info)
            if self.is_awaitable(matches):
                _close(matches)
                raise Bail
            if not matches:
                raise invalid_return_type_error(shape.type_, value, field.details)
        plan = shape.plan
        out = plan.template.copy()
        container.value[key] = out
        position = Position(out, value, container, key, shape.nonnull, plan.type_.name)
        batch = children.get(plan)
        if batch is None:
            children[plan] = [position]
        else:
            batch.append(position)

    def _list(
        self,
        shape: ListShape,
        value: Any,
        field: FieldPlan,
        owner: Position,
        container: Position,
        key: str | int,
        children: Children,
    ) -> None:
        if type(value) is list:  # what resolvers return: no need for the generic checks
            items = value
        else:
            if self.executor.is_async_iterable(value):
                raise Bail
            if not is_iterable(value):
                raise GraphQLError(
                    "Expected Iterable, but did not find one for field"
                    f" '{field.parent_type.name}.{field.name}'."
                )
            items = list(value)
        out: list[Any] = [None] * len(items)
        container.value[key] = out
        position = Position(out, None, container, key, shape.nonnull, None)
        item_shape = shape.item
        for index, item in enumerate(items):
            if type(item) not in _NEVER_AWAITABLE and self._awaitable(item):
                raise Bail
            try:
                self._complete(item_shape, item, field, owner, position, index, children)
            except Exception as error:
                self._slot_error(error, field, position, index, item_shape.nonnull)

    def _abstract(
        self,
        shape: AbstractShape,
        value: Any,
        field: FieldPlan,
        owner: Position,
        container: Position,
        key: str | int,
        children: Children,
    ) -> None:
        info: Any = CompiledResolveInfo(self, field, owner)
        resolve_type = shape.type_.resolve_type or self.executor.type_resolver
        runtime = resolve_type(value, info, shape.type_)
        if self.is_awaitable(runtime):
            _close(runtime)
            raise Bail
        runtime_type = self.executor.ensure_valid_runtime_type(
            runtime, shape.type_, field.details, info, value
        )
        object_shape = shape.objects.get(runtime_type.name)
        if object_shape is None:
            raise Bail
        self._object(object_shape, value, field, owner, container, key, children)

    def _awaitable(self, item: Any) -> bool:
        """graphql-core awaits awaitable list items; a compiled attempt gives up on them.
        Types whose instances cannot be awaitable are remembered, to skip the check."""
        if self.is_awaitable(item):
            return True
        kind = type(item)
        if not hasattr(kind, "__await__") and not issubclass(kind, CoroutineType | GeneratorType):
            _NEVER_AWAITABLE.add(kind)
        return False

    # Errors

    def _slot_error(
        self, error: Exception, field: FieldPlan, container: Position, key: str | int, nonnull: bool
    ) -> None:
        """Report a field error at slot `key` of `container` and null the nearest nullable
        place: the slot itself, or, if it is non-null, the closest container above it that
        sits in a nullable slot (the whole data at worst)."""
        if self.error is not None:
            raise Bail
        self.error = located_error(error, field.nodes, path_list(container, key))
        if not nonnull:
            container.value[key] = None
            return
        position = container
        while True:
            parent = position.parent
            if parent is None:
                self.data = None
                return
            if not position.nonnull:
                parent.value[position.key] = None
                return
            position = parent


async def _settle(awaitables: list[Awaitable[Any]]) -> list[Any]:
    """Await a wave: each outcome is a value or the exception it raised."""
    if len(awaitables) == 1:  # no Task needed for a lone awaitable
        try:
            return [await awaitables[0]]
        except Exception as error:
            return [error]
    outcomes = await asyncio.gather(*awaitables, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException) and not isinstance(outcome, Exception):
            raise outcome  # cancellation and the like are not field errors
    return outcomes


def _close(awaitable: Any) -> None:
    if isawaitable(awaitable) and hasattr(awaitable, "close"):
        awaitable.close()
