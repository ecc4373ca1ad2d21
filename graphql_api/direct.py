"""Queries run straight through the schema's own extensions, without Strawberry's generic
request machinery.

`Schema.execute` builds an extensions runner per request: for each extension and each of its
hooks, it looks the hook up, wraps it in context managers and enters them through exit stacks.
With three extensions, that machinery cost more CPU than the extensions' own work
(docs/benchmarks.md). For a query whose document is known good (parsed and validated, both
cached by `RequestGuard`'s checker), `DirectQueries` does the same steps in the same order with
plain calls: every extension's `on_operation` entered, `on_parse`, `on_validate`, then
`on_execute` around graphql-core's `execute` (with the compiled executor), left in reverse
order, errors processed where Strawberry processes them. Everything else (mutations,
subscriptions, documents that do not parse or validate or are too long to cache,
persisted-document extensions) takes Strawberry's own path, which also answers every request
error.

Proven equal to Strawberry's path by the differential suite (`make test-differential`): its
twin runs without the compiled executor, and so without this path.
"""

from __future__ import annotations

import inspect
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from graphql import ExecutionResult as GraphQLExecutionResult
from graphql import GraphQLError, OperationDefinitionNode, OperationType, specified_rules
from graphql.language import DocumentNode
from strawberry.execution import optimized_is_awaitable
from strawberry.extensions import SchemaExtension
from strawberry.schema._graphql_core import execution_context_class_kwargs
from strawberry.types import ExecutionContext, ExecutionResult
from strawberry.types.graphql import OperationType as StrawberryOperationType

from graphql_api.guard import CACHEABLE_QUERY_CHARS, Checker
from graphql_api.limits import selected_operation

if TYPE_CHECKING:
    from strawberry.schema import Schema

VALIDATION_RULES = tuple(specified_rules)
"""The rules Strawberry's execution context validates with (the guard adds its own)."""

_HOOKS = ("on_operation", "on_parse", "on_validate", "on_execute")

answered = [0]
"""Requests answered on this path in this process (the tests check that it is taken)."""


@dataclass(frozen=True)
class KnownQuery:
    """A request's query document, parsed and valid, and its selected query operation."""

    query: str
    document: DocumentNode
    operation: OperationDefinitionNode
    operation_name: str | None


class DirectQueries:
    """Recognises known queries and runs them (see the module's docstring)."""

    def __init__(self, schema: Schema, checker: Checker) -> None:
        self.schema = schema
        self.checker = checker
        extensions = schema.get_extensions()
        if any(_reports_results(extension) for extension in extensions):
            raise ValueError("An extension reports results: only Strawberry's path adds them.")
        if not all(
            inspect.isgeneratorfunction(getattr(type(extension), hook))
            for extension in extensions
            for hook in _HOOKS
            if _implements(extension, hook)
        ):
            raise ValueError("Every extension hook must be a generator (`yield` once).")
        self.implemented = {
            hook: [i for i, extension in enumerate(extensions) if _implements(extension, hook)]
            for hook in _HOOKS
        }
        self.execute_kwargs = {
            **execution_context_class_kwargs(schema.execution_context_class),
            **schema._get_custom_context_kwargs(None),
        }

    def recognise(self, query: str | None, operation_name: str | None) -> KnownQuery | None:
        """The known query this request asks for; None if it is anything else. A document too
        long for the guard's caches is left to Strawberry's path: its guard would parse and
        validate it once more."""
        if not query or len(query) > CACHEABLE_QUERY_CHARS:
            return None
        try:
            document = self.checker.parse(query)
        except GraphQLError:
            return None
        checked = self.checker.check(self.schema._schema, query, document, VALIDATION_RULES)
        if checked.errors:
            return None
        operation = selected_operation(document, operation_name)
        if operation is None or operation.operation is not OperationType.QUERY:
            return None
        return KnownQuery(query, document, operation, operation_name)

    async def execute(
        self,
        known: KnownQuery,
        variables: dict[str, Any] | None,
        context: Any,
        allowed_operation_types: Iterable[StrawberryOperationType],
    ) -> ExecutionResult:
        """What `Schema.execute` answers for `known`, step for step."""
        answered[0] += 1
        schema = self.schema
        execution = ExecutionContext(
            query=known.query,
            schema=schema,
            allowed_operations=allowed_operation_types,
            context=context,
            variables=variables,
            provided_operation_name=known.operation_name,
        )
        extensions = schema.get_extensions()
        for extension in extensions:
            extension.execution_context = execution
        try:
            operation = self._enter(extensions, "on_operation")
            try:
                self._enter(extensions, "on_parse").leave()
                self._enter(extensions, "on_validate").leave()
                result = await self._execute(execution, extensions)
            except BaseException as exc:
                operation.leave(exc)
                raise
            operation.leave()
        except Exception as exc:  # as Strawberry: the error becomes the answer
            error = (
                exc if isinstance(exc, GraphQLError) else GraphQLError(str(exc), original_error=exc)
            )
            return self._finish(execution, GraphQLExecutionResult(None, [error]), process=True)
        return self._finish(execution, result, process=False)

    async def _execute(
        self, execution: ExecutionContext, extensions: list[SchemaExtension]
    ) -> GraphQLExecutionResult:
        schema = self.schema
        executing = self._enter(extensions, "on_execute")
        try:
            if execution.result is None:  # a guard's refusal is the result otherwise
                outcome = schema._get_execute_function()(
                    schema._schema,
                    execution.graphql_document,
                    root_value=execution.root_value,
                    middleware=schema._get_middleware_manager(extensions),
                    variable_values=execution.variables,
                    operation_name=execution.operation_name,
                    context_value=execution.context,
                    is_awaitable=optimized_is_awaitable,
                    **self.execute_kwargs,
                )
                if optimized_is_awaitable(outcome):
                    outcome = await outcome
                execution.result = outcome
            result = execution.result
            assert isinstance(result, GraphQLExecutionResult)
            if result.errors:
                execution.pre_execution_errors = result.errors
                schema._process_errors(result.errors, execution)
        except BaseException as exc:
            executing.leave(exc)
            raise
        executing.leave()
        return result

    def _finish(
        self, execution: ExecutionContext, result: GraphQLExecutionResult, *, process: bool
    ) -> ExecutionResult:
        """Strawberry's `_handle_execution_result`, for results without extension results."""
        if result.errors:
            execution.pre_execution_errors = result.errors
            if process:
                self.schema._process_errors(result.errors, execution)
        answer = ExecutionResult(data=result.data, errors=result.errors, extensions={})
        execution.result = answer
        return answer

    def _enter(self, extensions: list[SchemaExtension], hook: str) -> _Entered:
        return _Entered([getattr(extensions[i], hook)() for i in self.implemented[hook]])


class _Entered:
    """Generator hooks entered in order; left in reverse order, as an exit stack leaves them
    (an exception is thrown into each; one that a hook swallows goes no further)."""

    def __init__(self, hooks: list[Generator[None, None, None]]) -> None:
        for hook in hooks:
            next(hook)
        self.hooks = hooks

    def leave(self, error: BaseException | None = None) -> None:
        for hook in reversed(self.hooks):
            if error is None:
                next(hook, None)
                continue
            try:
                hook.throw(error)
            except StopIteration:
                error = None
            except BaseException as raised:  # the same error, or one the hook raised
                error = raised
        if error is not None:
            raise error


def _implements(extension: SchemaExtension, hook: str) -> bool:
    return getattr(type(extension), hook) is not getattr(SchemaExtension, hook)


def _reports_results(extension: SchemaExtension) -> bool:
    return type(extension).get_results is not SchemaExtension.get_results
