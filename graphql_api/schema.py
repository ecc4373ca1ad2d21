"""The schema: the domains' queries and mutations merged, `node`, and the request guards."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import suppress
from functools import lru_cache
from typing import Annotated, Any

import strawberry
from graphql import ExecutionResult as GraphQLExecutionResult
from graphql import GraphQLError, Visitor, parse, visit
from graphql.language import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    SelectionSetNode,
    StringValueNode,
)
from strawberry.extensions import (
    DisableIntrospection,
    MaxTokensLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from graphql_api.compiled import CompiledExecutor
from graphql_api.context import Context, Info
from graphql_api.conversations.mutations import ConversationMutations
from graphql_api.conversations.queries import ConversationQueries
from graphql_api.conversations.types import Conversation, Message
from graphql_api.errors import ApiError, BadUserInput, NotFound, Unauthenticated
from graphql_api.limits import cost_limit, fragments_of, selected_operation, validation_limits
from graphql_api.loaders import load_existing
from graphql_api.observability import MetricsExtension
from graphql_api.relay import Node, decode_id, parse_uuid
from graphql_api.settings import Settings
from graphql_api.tags.mutations import TagMutations
from graphql_api.tags.queries import TagQueries
from graphql_api.tags.types import Tag
from graphql_api.tasks.mutations import TaskMutations
from graphql_api.tasks.queries import TaskQueries
from graphql_api.tasks.types import Task
from graphql_api.users import repository as users
from graphql_api.users.mutations import UserMutations
from graphql_api.users.queries import UserQueries
from graphql_api.users.types import User

log = logging.getLogger(__name__)

PUBLIC_ROOT_FIELDS = frozenset({"signUp", "signIn", "__schema", "__type", "__typename"})
"""Root fields that work without a token. Everything else answers UNAUTHENTICATED."""


async def _load_node(info: Info, type_name: str, raw_id: str) -> Node:
    context = info.context
    if type_name == "User":
        if raw_id != context.user_id:
            raise NotFound("User")
        return User.from_row(await context.db.read(users.get_user))
    loaders = context.loaders
    by_type: dict[str, tuple[Any, Any]] = {
        "Task": (loaders.task_by_id, Task.from_row),
        "Tag": (loaders.tag_by_id, Tag.from_row),
        "Conversation": (loaders.conversation_by_id, Conversation.from_row),
        "Message": (loaders.message_by_id, Message.from_row),
    }
    if type_name not in by_type:
        raise NotFound("Object")
    loader, make = by_type[type_name]
    node: Node = make(await load_existing(loader, parse_uuid(raw_id, type_name), type_name))
    return node


@strawberry.type
class NodeQueries:
    @strawberry.field(
        description="Refetch any object by its global ID; null and NOT_FOUND if it is not yours."
    )
    async def node(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="A global ID.")],
    ) -> Node | None:
        type_name, raw_id = decode_id(id)
        return await _load_node(info, type_name, raw_id)


@strawberry.type(description="Everything you can read; all of it is scoped to the signed-in user.")
class Query(UserQueries, NodeQueries, TaskQueries, TagQueries, ConversationQueries):
    pass


@strawberry.type(description="Everything you can change; each mutation is one transaction.")
class Mutation(UserMutations, TaskMutations, TagMutations, ConversationMutations):
    pass


def _root_fields(
    selection_set: SelectionSetNode,
    fragments: dict[str, FragmentDefinitionNode],
    seen: frozenset[str] = frozenset(),
) -> Iterator[str]:
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            yield selection.name.value
        elif isinstance(selection, InlineFragmentNode):
            yield from _root_fields(selection.selection_set, fragments, seen)
        elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in seen:
            fragment = fragments[selection.name.value]
            yield from _root_fields(fragment.selection_set, fragments, seen | {fragment.name.value})


class RequireAuthentication(SchemaExtension):
    """No token, no data: an operation selecting any non-public root field is refused whole."""

    def on_execute(self) -> Iterator[None]:
        execution = self.execution_context
        context: Context = execution.context
        document = execution.graphql_document
        if context.principal is None and document is not None:
            operation = selected_operation(document, execution.operation_name)
            if operation is not None:
                fields = set(_root_fields(operation.selection_set, fragments_of(document)))
                if fields - PUBLIC_ROOT_FIELDS:
                    error = context.auth_error or Unauthenticated(
                        "Sign in first: send `Authorization: Bearer <token>`."
                    )
                    execution.result = GraphQLExecutionResult(
                        data=None,
                        errors=[GraphQLError(error.message, extensions=error.extensions)],
                    )
        yield


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(item) for item in value.values())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


class RefuseNulCharacters(SchemaExtension):
    """Text with NUL characters cannot be stored (PostgreSQL refuses it): refuse it up front,
    in variables and in literals alike, as the client's mistake it is."""

    def on_execute(self) -> Iterator[None]:
        execution = self.execution_context
        document, query = execution.graphql_document, execution.query or ""
        literals: list[str] = []
        # Only an escape (\u0000, \u{0}) or a raw NUL can put one in a literal: most queries
        # have neither, and are spared walking their syntax tree (about 0.3 ms).
        if document is not None and ("\\u" in query or "\x00" in query):
            literals = _string_literals(document)
        if execution.result is None and (_has_nul(execution.variables) or _has_nul(literals)):
            error = BadUserInput("Text may not contain NUL (\\u0000) characters.")
            execution.result = GraphQLExecutionResult(
                data=None, errors=[GraphQLError(error.message, extensions=error.extensions)]
            )
        yield


def _string_literals(document: DocumentNode) -> list[str]:
    found: list[str] = []

    class Collect(Visitor):
        def enter_string_value(self, node: StringValueNode, *_: Any) -> None:
            found.append(node.value)

    visit(document, Collect())
    return found


def _code_of(error: GraphQLError) -> str:
    if error.message.startswith("Syntax Error"):
        return "GRAPHQL_PARSE_FAILED"
    if error.message.startswith("Variable '$"):
        return "BAD_USER_INPUT"
    return "GRAPHQL_VALIDATION_FAILED"


def is_unexpected(error: GraphQLError) -> bool:
    """An error that is not the client's doing: a bug or an outage, to be masked and logged."""
    original = error.original_error
    return original is not None and not isinstance(original, (ApiError, GraphQLError))


class FormatErrors(SchemaExtension):
    """Every error gets an `extensions.code`; unexpected ones are masked (no stack, no SQL)."""

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        if result is None or not result.errors:
            return
        context = self.execution_context.context
        request_id = getattr(context, "request_id", None)
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
        extensions = dict(error.extensions or {})
        extensions.setdefault("code", _code_of(error))
        extensions["requestId"] = request_id
        error.extensions = extensions
        return error


@lru_cache(maxsize=512)
def _parse(query: str, options: tuple[tuple[str, Any], ...]) -> DocumentNode:
    return parse(query, **dict(options))


class CachedParser(SchemaExtension):
    """Parse each distinct query text once. Strawberry's ParserCache raises syntax errors from
    its hook, past the extensions that format errors; this one leaves invalid queries to
    Strawberry's own parse, which reports them as usual."""

    def on_parse(self) -> Iterator[None]:
        execution = self.execution_context
        if execution.query is not None:
            with suppress(GraphQLError):
                options = tuple(sorted(execution.parse_options.items()))
                execution.graphql_document = _parse(execution.query, options)
        yield


class ApiSchema(strawberry.Schema):
    """Logs unexpected errors with their stack and request id; the client's own mistakes are
    not server errors and are logged at debug level only."""

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


class ApiExecutor(CompiledExecutor):
    """The compiled path. When a compiled attempt gives up, the reference executor starts
    with empty loaders, so it runs (and batches) exactly as it would have on its own."""

    def before_reference_run(self, context: Any) -> None:
        if isinstance(context, Context):
            context.renew_loaders()


def build_schema(settings: Settings | None = None) -> strawberry.Schema:
    """The schema with the limits and switches of `settings` (defaults: development)."""
    settings = settings or Settings(_env_file=None)
    return _build_schema(
        max_depth=settings.max_depth,
        max_aliases=settings.max_aliases,
        max_tokens=settings.max_tokens,
        max_directives=settings.max_directives,
        max_cost=settings.max_cost,
        introspection=settings.introspection,
        suggestions=settings.environment != "production",
        compiled=settings.compiled_execution,
    )


@lru_cache(maxsize=8)
def _build_schema(
    *,
    max_depth: int,
    max_aliases: int,
    max_tokens: int,
    max_directives: int,
    max_cost: int,
    introspection: bool,
    suggestions: bool,
    compiled: bool = True,
) -> strawberry.Schema:
    extensions: list[Any] = [
        MetricsExtension,
        FormatErrors,
        RequireAuthentication,
        RefuseNulCharacters,
        CachedParser,
        validation_limits(
            max_depth=max_depth, max_aliases=max_aliases, max_directives=max_directives
        ),
        lambda: ValidationCache(maxsize=512),
        lambda: MaxTokensLimiter(max_token_count=max_tokens),
        cost_limit(max_cost),
    ]
    if not introspection:
        extensions.append(DisableIntrospection)
    return ApiSchema(
        query=Query,
        mutation=Mutation,
        extensions=extensions,
        config=StrawberryConfig(disable_field_suggestions=not suggestions),
        execution_context_class=ApiExecutor if compiled else None,
    )


schema = build_schema()
"""The schema with default settings: what `export-schema` prints (limits do not change SDL)."""
