"""What every operation goes through before any resolver runs, as one extension per request:
parse (cached), the shape limits and graphql-core's validation (cached), then the token
check, NUL refusal and the cost limit.

One extension instead of one per concern: Strawberry builds every extension anew for each
request and calls each of its hooks, which costs CPU on every request.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from graphql import ExecutionResult as GraphQLExecutionResult
from graphql import (
    GraphQLError,
    GraphQLInputType,
    GraphQLSchema,
    OperationType,
    ValuesOfCorrectTypeRule,
    Visitor,
    parse,
    validate,
    visit,
)
from graphql.language import (
    ArgumentNode,
    DocumentNode,
    FragmentDefinitionNode,
    ObjectValueNode,
    OperationDefinitionNode,
    StringValueNode,
    ValueNode,
)
from graphql.language.visitor import SKIP, VisitorAction
from graphql.utilities.validate_input_value import validate_input_literal
from graphql.validation import ASTValidationRule, NoSchemaIntrospectionCustomRule
from strawberry.extensions import SchemaExtension
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule
from strawberry.types import ExecutionContext

from graphql_api.errors import BadUserInput, Unauthenticated
from graphql_api.limits import (
    OperationShape,
    ShapeLimits,
    cost_error,
    directive_limit,
    fragments_of,
    measure_document,
    operation_cost,
    selected_operation,
)

PUBLIC_ROOT_FIELDS = frozenset({"signUp", "signIn", "__schema", "__type", "__typename"})
"""Root fields that work without a token. Everything else answers UNAUTHENTICATED."""

CACHE_SIZE = 512
"""Distinct documents whose parse, shape and validation are kept (per process)."""

CACHEABLE_QUERY_CHARS = 16_384
"""Longer documents are not kept: 512 of the largest bodies would hold 128 MiB. Real clients'
operations are far smaller; a padded document is only parsed and checked each time."""

K = TypeVar("K")
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """A least-recently-used mapping of at most `size` entries."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[K, V] = OrderedDict()

    def get_or_make(self, key: K, make: Callable[[], V]) -> V:
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        value = self._entries[key] = make()
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return value


@dataclass(frozen=True)
class GuardSettings:
    """The switches and limits of `RequestGuard` (one schema, one set)."""

    shape: ShapeLimits
    max_tokens: int
    max_directives: int
    max_cost: int
    introspection: bool
    suggestions: bool


@dataclass(frozen=True)
class Checked:
    """A document's shape, fragments and validation errors (empty: valid)."""

    shapes: dict[str | None, OperationShape]
    fragments: dict[str, FragmentDefinitionNode]
    errors: tuple[GraphQLError, ...]


def _tag_validation_error(error: GraphQLError) -> GraphQLError:
    if not (error.extensions or {}).get("code"):
        error.extensions = {**(error.extensions or {}), "code": "GRAPHQL_VALIDATION_FAILED"}
    return error


class LocatedValuesOfCorrectType(ValuesOfCorrectTypeRule):
    """graphql-core's rule, except that every error names the input field or argument it is
    about, in the message and in `extensions.field` (`title: null` in an input, `ids: null`
    as an argument), and an error a scalar raised itself (a `DateTime` without a time zone)
    gets the location of the bad literal, like every other `BAD_USER_INPUT`."""

    argument: str | None = None

    def enter_argument(self, node: ArgumentNode, *_args: Any) -> None:
        self.argument = node.name.value

    def leave_argument(self, *_args: Any) -> None:
        self.argument = None

    def is_valid_value_node(
        self, node: ValueNode, input_type: GraphQLInputType | None
    ) -> VisitorAction:
        if input_type:
            argument = self.argument

            def on_error(error: GraphQLError, path: list[str | int]) -> None:
                self.report_error(_located(error, node, path, argument))

            validate_input_literal(
                node, input_type, on_error, hide_suggestions=self.context.hide_suggestions
            )
        return SKIP


def field_named_in(message: str) -> str | None:
    """The input field a graphql-core message is about: one missing or unknown in an object."""
    found = NAMED_FIELD.search(message)
    return found.group(1) if found else None


NAMED_FIELD = re.compile(r"to include (?:required|unknown) field '(\w+)'")


def _located(
    error: GraphQLError, node: ValueNode, path: list[str | int], argument: str | None
) -> GraphQLError:
    field = (
        field_named_in(error.message)
        or next((key for key in reversed(path) if isinstance(key, str)), None)
        or argument
    )
    extensions = dict(error.extensions or {})
    message = error.message
    if field is not None:
        extensions["field"] = field
        message = f"`{field}`: {message}"
    if error.nodes:
        nodes: Any = error.nodes
    else:
        for key in path:  # down to the literal itself, for its location
            if isinstance(node, ObjectValueNode) and isinstance(key, str):
                node = next((f.value for f in node.fields if f.name.value == key), node)
        nodes = node
    return GraphQLError(message, nodes, original_error=error.original_error, extensions=extensions)


class Checker:
    """Shape and validation of documents, computed once per distinct query text."""

    def __init__(self, settings: GuardSettings) -> None:
        self.settings = settings
        self.rules: tuple[type[ASTValidationRule], ...] = (
            MaybeNullValidationRule,
            OneOfInputValidationRule,
            directive_limit(settings.max_directives),
            *(() if settings.introspection else (NoSchemaIntrospectionCustomRule,)),
        )
        self.parsed: BoundedCache[str, DocumentNode] = BoundedCache(CACHE_SIZE)
        self.checked: BoundedCache[tuple[int, str], Checked] = BoundedCache(CACHE_SIZE)

    def parse(self, query: str) -> DocumentNode:
        def make() -> DocumentNode:
            return parse(query, max_tokens=self.settings.max_tokens)

        return (
            make() if len(query) > CACHEABLE_QUERY_CHARS else self.parsed.get_or_make(query, make)
        )

    def check(
        self,
        schema: GraphQLSchema,
        query: str | None,
        document: DocumentNode,
        rules: tuple[type[ASTValidationRule], ...],
    ) -> Checked:
        if query is None or len(query) > CACHEABLE_QUERY_CHARS:
            return self._check(schema, document, rules)
        return self.checked.get_or_make(
            (id(schema), query), lambda: self._check(schema, document, rules)
        )

    def _check(
        self,
        schema: GraphQLSchema,
        document: DocumentNode,
        rules: tuple[type[ASTValidationRule], ...],
    ) -> Checked:
        settings = self.settings
        shapes = measure_document(document, settings.shape.max_fields)
        errors = [error for shape in shapes.values() for error in shape.violations(settings.shape)]
        if not errors:  # a document refused for its shape never reaches graphql-core's rules
            rules = tuple(
                LocatedValuesOfCorrectType if rule is ValuesOfCorrectTypeRule else rule
                for rule in rules
            )
            errors = validate(
                schema,
                document,
                (*rules, *self.rules),
                hide_suggestions=not settings.suggestions,
            )
        return Checked(
            shapes,
            fragments_of(document),
            tuple(_tag_validation_error(error) for error in errors),
        )


def guard(
    checker: Checker, kind: type[RequestGuard] | None = None
) -> Callable[[], SchemaExtension]:
    """A factory of `RequestGuard`s (or of a subclass: `kind`) sharing `checker`'s cache of
    checked documents."""
    make = kind or RequestGuard
    return lambda: make(checker)


class RequestGuard(SchemaExtension):
    """Parse, check and guard one request (see the module's docstring)."""

    def __init__(self, checker: Checker) -> None:
        super().__init__()
        self.checker = checker
        self.checked: Checked | None = None

    def on_parse(self) -> Iterator[None]:
        execution = self.execution_context
        execution.parse_options["max_tokens"] = self.checker.settings.max_tokens
        if execution.query is not None:
            # A syntax error is left to Strawberry's own parse, which reports it as usual.
            with suppress(GraphQLError):
                execution.graphql_document = self.checker.parse(execution.query)
        yield

    def on_validate(self) -> Iterator[None]:
        execution = self.execution_context
        assert execution.graphql_document is not None
        self.checked = self.checker.check(
            execution.schema._schema,
            execution.query,
            execution.graphql_document,
            execution.validation_rules,
        )
        # Setting the errors (even none) tells Strawberry validation is done.
        execution.pre_execution_errors = list(self.checked.errors)
        yield

    def on_execute(self) -> Iterator[None]:
        execution = self.execution_context
        document = execution.graphql_document
        operation = None
        if self.checked is not None and document is not None and execution.result is None:
            operation = selected_operation(document, execution.operation_name)
        if operation is not None:
            assert self.checked is not None
            name = operation.name.value if operation.name else None
            shape = self.checked.shapes[name]
            checks = (self._authenticated, self._without_nul, self._within_cost, self._transported)
            for check in checks:
                if (error := check(execution, operation, shape)) is not None:
                    if execution.context.over_websocket:
                        raise error  # Strawberry starts a subscription whatever `result` says
                    execution.result = GraphQLExecutionResult(data=None, errors=[error])
                    break
        yield

    @staticmethod
    def _transported(
        execution: ExecutionContext, operation: OperationDefinitionNode, _: OperationShape
    ) -> GraphQLError | None:
        """A subscription needs a stream to answer on: a WebSocket."""
        if (
            operation.operation is not OperationType.SUBSCRIPTION
            or execution.context.over_websocket
        ):
            return None
        return GraphQLError(
            "Subscriptions run over a WebSocket on /graphql (the graphql-transport-ws protocol).",
            extensions={"code": "BAD_REQUEST"},
        )

    @staticmethod
    def _authenticated(
        execution: ExecutionContext, _: OperationDefinitionNode, shape: OperationShape
    ) -> GraphQLError | None:
        context = execution.context
        if context.principal is not None or not shape.root_fields - PUBLIC_ROOT_FIELDS:
            return None
        error = context.auth_error or Unauthenticated(
            "Sign in first: send `Authorization: Bearer <token>`."
        )
        return GraphQLError(error.message, extensions=error.extensions)

    @staticmethod
    def _without_nul(
        execution: ExecutionContext, *_: OperationDefinitionNode | OperationShape
    ) -> GraphQLError | None:
        """Text with NUL characters cannot be stored (PostgreSQL refuses it): refuse it up
        front, in variables and in literals alike, as the client's mistake it is."""
        query, document = execution.query or "", execution.graphql_document
        # Only an escape (\u0000, \u{0}) or a raw NUL can put one in a literal: most queries
        # have neither, and are spared walking their syntax tree.
        literals = (
            _string_literals(document)
            if document is not None and ("\\u" in query or "\x00" in query)
            else []
        )
        if _has_nul(execution.variables) or _has_nul(literals):
            error = BadUserInput("Text may not contain NUL (\\u0000) characters.")
            return GraphQLError(error.message, extensions=error.extensions)
        return None

    def _within_cost(
        self, execution: ExecutionContext, operation: OperationDefinitionNode, _: OperationShape
    ) -> GraphQLError | None:
        assert self.checked is not None
        max_cost = self.checker.settings.max_cost
        schema = execution.schema._schema
        variables = execution.variables or {}
        cost = operation_cost(schema, operation, self.checked.fragments, variables)
        return cost_error(cost, max_cost) if cost > max_cost else None


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(item) for item in value.values())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


def _string_literals(document: DocumentNode) -> list[str]:
    found: list[str] = []

    class Collect(Visitor):
        def enter_string_value(self, node: StringValueNode, *_: Any) -> None:
            found.append(node.value)

    visit(document, Collect())
    return found
