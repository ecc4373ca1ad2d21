"""The schema: the domains' queries and mutations merged, `node`, and error formatting."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from typing import Annotated, Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.schema import DEFAULT_ALLOWED_OPERATION_TYPES
from strawberry.types import ExecutionContext, ExecutionResult
from strawberry.types.execution import StreamExecutionResult
from strawberry.types.graphql import OperationType

from graphql_api.changes.queries import ChangeQueries
from graphql_api.compiled import AcyclicExecutor, CompiledExecutor
from graphql_api.context import Context, Info
from graphql_api.conversations.mutations import ConversationMutations
from graphql_api.conversations.queries import ConversationQueries
from graphql_api.direct import DirectQueries
from graphql_api.errors import ApiError
from graphql_api.guard import (
    PUBLIC_ROOT_FIELDS,
    Checker,
    GuardSettings,
    field_named_in,
    guard,
)
from graphql_api.limits import ShapeLimits
from graphql_api.live.subscriptions import Subscription
from graphql_api.nodes import load_node
from graphql_api.observability import MetricsExtension
from graphql_api.relay import Node
from graphql_api.scalars import SCALAR_OVERRIDES
from graphql_api.settings import Settings
from graphql_api.tags.mutations import TagMutations
from graphql_api.tags.queries import TagQueries
from graphql_api.tasks.mutations import TaskMutations
from graphql_api.tasks.queries import TaskQueries
from graphql_api.tracing import TracedRequestGuard
from graphql_api.trash.mutations import TrashMutations
from graphql_api.users.mutations import UserMutations
from graphql_api.users.queries import UserQueries

__all__ = ["PUBLIC_ROOT_FIELDS", "build_schema", "schema"]

log = logging.getLogger(__name__)


@strawberry.type
class NodeQueries:
    @strawberry.field(
        description="Refetch any object by its global ID; null if you have no such object."
    )
    async def node(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="A global ID.")],
    ) -> Node | None:
        return await load_node(info, id)


@strawberry.type(description="Everything you can read; all of it is scoped to the signed-in user.")
class Query(UserQueries, NodeQueries, TaskQueries, TagQueries, ConversationQueries, ChangeQueries):
    pass


@strawberry.type(
    description="Everything you can change. Each mutation is one transaction; one that fails "
    "answers null and its error, and the mutations after it in the request still run."
)
class Mutation(UserMutations, TaskMutations, TagMutations, ConversationMutations, TrashMutations):
    pass


SUGGESTION = re.compile(r"\s*Did you mean [^?]*\?")
VARIABLE_FIELD = re.compile(r"^Variable '\$\w+' has invalid value at [^:]*\.(\w+)(?:\[\d+\])*:")
VARIABLE_VALUE_ERROR = re.compile(
    r"^Variable '\$\w+' (has invalid|of required type|of non-null type)"
)


def _code_of(error: GraphQLError) -> str:
    """The code of an error graphql-core raised without one: validation errors got theirs
    when validated, so what is left is a syntax error or a bad variable value."""
    if error.message.startswith("Syntax Error: Document contains more than"):
        return "QUERY_TOO_COMPLEX"
    if error.message.startswith("Syntax Error"):
        return "GRAPHQL_PARSE_FAILED"
    if VARIABLE_VALUE_ERROR.match(error.message):
        return "BAD_USER_INPUT"
    return "GRAPHQL_VALIDATION_FAILED"


def _variable_field(message: str) -> str | None:
    """The input field a variable's error is about: one missing or unknown in an object, or
    the last field of the path to the bad value."""
    if not VARIABLE_VALUE_ERROR.match(message):
        return None
    if named := field_named_in(message):
        return named
    found = VARIABLE_FIELD.match(message)
    return found.group(1) if found else None


def _cause_extensions(error: GraphQLError) -> dict[str, Any]:
    """The extensions of the API error or coded GraphQL error behind `error`, if any: a bad
    scalar value deep in a variable is reported by graphql-core around the scalar's error."""
    cause = error.original_error
    while cause is not None:
        extensions = getattr(cause, "extensions", None)
        if extensions and "code" in extensions:
            return dict(extensions)
        cause = getattr(cause, "original_error", None)
    return {}


def is_unexpected(error: GraphQLError) -> bool:
    """An error that is not the client's doing: a bug or an outage, to be masked and logged.
    Errors found while validating carry their code already and never are: graphql-core keeps
    the exception a scalar raised on a bad literal (a 5,000-digit Int) as their cause."""
    original = error.original_error
    if original is None or isinstance(original, (ApiError, GraphQLError)):
        return False
    return "code" not in (error.extensions or {})


def error_formatter(*, suggestions: bool) -> type[SchemaExtension]:
    """An extension giving every error an `extensions.code` and masking unexpected ones (no
    stack, no SQL); without `suggestions` (production), no "Did you mean" hints."""

    class FormatErrors(SchemaExtension):
        streamed = False

        def on_operation(self) -> Iterator[None]:
            yield
            if not self.streamed:
                self._format_result(self.execution_context.result)

        def on_stream_result(self, result: StreamExecutionResult) -> Iterator[None]:
            """Each result of an operation over WebSocket, before it goes out."""
            self.streamed = True
            if isinstance(result, ExecutionResult):
                self._format_result(result)
            yield

        def _format_result(self, result: Any) -> None:
            if result is None or not result.errors:
                return
            request_id = getattr(self.execution_context.context, "request_id", None)
            result.errors = [self._format(error, request_id) for error in result.errors]

        @staticmethod
        def _format(error: GraphQLError, request_id: str | None) -> GraphQLError:
            if is_unexpected(error):
                return GraphQLError(
                    "Internal server error.",
                    nodes=error.nodes,
                    path=error.path,
                    extensions={"code": "INTERNAL_SERVER_ERROR", "requestId": request_id},
                )
            extensions = {**_cause_extensions(error), **(error.extensions or {})}
            extensions.setdefault("code", _code_of(error))
            if "field" not in extensions and (field := _variable_field(error.message)):
                extensions["field"] = field  # the input field graphql-core names
            extensions["requestId"] = request_id
            # graphql-core writes Python's None where GraphQL says null.
            message = error.message.replace(" not to be None.", " not to be null.")
            message = message if suggestions else SUGGESTION.sub("", message)
            # A new error: validation errors are cached and shared by every request.
            return GraphQLError(
                message,
                nodes=error.nodes,
                source=error.source,
                positions=error.positions,
                path=error.path,
                original_error=error.original_error,
                extensions=extensions,
            )

    return FormatErrors


class ApiSchema(strawberry.Schema):
    """Runs known queries directly (`graphql_api.direct`) when `direct` is set. Logs
    unexpected errors with their stack and request id; the client's own mistakes are not
    server errors and are logged at debug level only."""

    direct: DirectQueries | None = None

    async def execute(
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        allowed_operation_types: Iterable[OperationType] | None = None,
        operation_extensions: dict[str, Any] | None = None,
    ) -> ExecutionResult:
        allowed = (
            DEFAULT_ALLOWED_OPERATION_TYPES
            if allowed_operation_types is None
            else allowed_operation_types
        )
        if (
            self.direct is not None
            and root_value is None
            and operation_extensions is None
            and OperationType.QUERY in allowed
            and (known := self.direct.recognise(query, operation_name)) is not None
        ):
            return await self.direct.execute(known, variable_values, context_value, allowed)
        return await super().execute(
            query,
            variable_values,
            context_value,
            root_value,
            operation_name,
            allowed_operation_types,
            operation_extensions,
        )

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        request_id = getattr(getattr(execution_context, "context", None), "request_id", None)
        for error in errors:
            if is_unexpected(error):
                log.error(
                    "Unexpected error in %s (request %s)",
                    ".".join(map(str, error.path or [])) or "operation",
                    request_id,
                    exc_info=error.original_error,
                )
            else:
                log.debug("Client error: %s", error.message)
            _drop_traceback(error)


def _drop_traceback(error: GraphQLError) -> None:
    """Once logged, an error's traceback serves nothing, and its frames (a resolver's, holding
    the request's context) and the error refer to each other: a cycle that kept the whole
    request's objects until the cyclic garbage collector ran."""
    error.__traceback__ = None
    if error.original_error is not None:
        error.original_error.__traceback__ = None


class ApiExecutor(CompiledExecutor):
    """The compiled path. When a compiled attempt gives up, the reference executor starts
    with empty loaders, so it runs (and batches) exactly as it would have on its own."""

    def before_reference_run(self, context: Any) -> None:
        if isinstance(context, Context):
            context.renew_loaders()


def build_schema(settings: Settings | None = None, *, traced: bool = False) -> strawberry.Schema:
    """The schema with the limits and switches of `settings` (defaults: development); `traced`:
    its guard also opens each operation's span (`graphql_api.tracing`)."""
    settings = settings or Settings(_env_file=None)
    return _build_schema(
        max_depth=settings.max_depth,
        max_aliases=settings.max_aliases,
        max_tokens=settings.max_tokens,
        max_directives=settings.max_directives,
        max_cost=settings.max_cost,
        max_field_repeats=settings.max_field_repeats,
        introspection=settings.introspection,
        suggestions=settings.environment != "production",
        compiled=settings.compiled_execution,
        traced=traced,
    )


@lru_cache(maxsize=8)
def _build_schema(
    *,
    max_depth: int,
    max_aliases: int,
    max_tokens: int,
    max_directives: int,
    max_cost: int,
    max_field_repeats: int,
    introspection: bool,
    suggestions: bool,
    compiled: bool = True,
    traced: bool = False,
) -> strawberry.Schema:
    limits = GuardSettings(
        shape=ShapeLimits(
            max_depth=max_depth,
            max_aliases=max_aliases,
            max_fields=max_cost,
            max_field_repeats=max_field_repeats,
        ),
        max_tokens=max_tokens,
        max_directives=max_directives,
        max_cost=max_cost,
        introspection=introspection,
        suggestions=suggestions,
    )
    formatter = error_formatter(suggestions=suggestions)
    checker = Checker(limits)
    extensions: list[type[SchemaExtension] | Callable[[], SchemaExtension]] = (
        # The traced guard ends its span after the formatter has coded every error.
        [MetricsExtension, guard(checker, TracedRequestGuard), formatter]
        if traced
        else [MetricsExtension, formatter, guard(checker)]
    )
    schema = ApiSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=extensions,
        config=StrawberryConfig(disable_field_suggestions=not suggestions),
        scalar_overrides=SCALAR_OVERRIDES,
        execution_context_class=ApiExecutor if compiled else AcyclicExecutor,
    )
    if compiled and not traced:  # the traced guard's spans follow Strawberry's runner
        schema.direct = DirectQueries(schema, checker)
    return schema


schema = build_schema()
"""The schema with default settings: what `export-schema` prints (limits do not change SDL)."""
