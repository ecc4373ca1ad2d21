"""The hook: a graphql-core executor class that runs cached plans, and graphql-core otherwise.

Strawberry lets a schema choose the executor class graphql-core builds for each operation
(`execution_context_class`). Everything before execution (parsing, validation, the schema's
extensions, variable coercion in `Executor.build`) and after it (error processing and
formatting) is unchanged; only `execute_operation` differs, and only for operations a plan
covers: queries without introspection, middleware, abort signals or incremental delivery.
"""

from __future__ import annotations

import logging
import weakref
from collections import Counter, OrderedDict
from collections.abc import Awaitable
from typing import Any

from graphql import ExecutionResult, GraphQLResolveInfoHelpers, GraphQLSchema, OperationType
from graphql.pyutils import AwaitableOrValue
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from graphql_api.compiled.plan import Plan, PlanBuilder, Unsupported, directive_variables
from graphql_api.compiled.run import Run

log = logging.getLogger(__name__)

outcomes: Counter[str] = Counter()
"""How operations were answered in this process: `compiled`; `reference` (no plan: not a
query, introspection, ...); `rerun` (a compiled attempt gave up: see `graphql_api.compiled.run`)."""

MAX_OPERATIONS = 512
"""Distinct (document, operation) pairs whose plans are kept per schema."""
MAX_VARIANTS = 16
"""Plans kept per operation, one per combination of its `@skip`/`@include` variables."""


class _Operation:
    """The cached plans of one operation of one document."""

    __slots__ = ("plans", "variables")

    def __init__(self, variables: tuple[str, ...]) -> None:
        self.variables = variables  # the variables @skip/@include read
        self.plans: dict[tuple[Any, ...], Plan | None] = {}  # None: not plannable


class PlanCache:
    """Plans by document text, operation name and `@skip`/`@include` values; least recently
    used operations are dropped first."""

    def __init__(self, max_operations: int = MAX_OPERATIONS) -> None:
        self.max_operations = max_operations
        self.operations: OrderedDict[tuple[str, str | None], _Operation] = OrderedDict()

    def plan_for(self, executor: StrawberryGraphQLCoreExecutionContext) -> Plan | None:
        operation = executor.operation
        if operation.loc is None:  # parsed without locations: no text to key the plan by
            return None
        name = operation.name.value if operation.name else None
        key = (operation.loc.source.body, name)
        cached = self.operations.get(key)
        if cached is None:
            variables = directive_variables(operation, executor.fragment_definitions)
            cached = self.operations[key] = _Operation(variables)
            while len(self.operations) > self.max_operations:
                self.operations.popitem(last=False)
        else:
            self.operations.move_to_end(key)
        coerced = executor.variable_values.coerced
        variant = tuple(coerced.get(variable) for variable in cached.variables)
        if variant in cached.plans:
            return cached.plans[variant]
        plan = _build(executor)
        if len(cached.plans) < MAX_VARIANTS:
            cached.plans[variant] = plan
        return plan


def _build(executor: StrawberryGraphQLCoreExecutionContext) -> Plan | None:
    try:
        return PlanBuilder(
            executor.schema,
            executor.fragments,
            executor.variable_values,
            executor.operation,
            hide_suggestions=executor.hide_suggestions,
        ).build()
    except Unsupported as reason:
        log.debug("Operation left to the reference executor: %s", reason)
    except Exception:  # the reference executor reports whatever this is, as it always has
        log.debug("No plan for this operation", exc_info=True)
    return None


_caches: weakref.WeakKeyDictionary[GraphQLSchema, PlanCache] = weakref.WeakKeyDictionary()


def plan_cache(schema: GraphQLSchema) -> PlanCache:
    """The plan cache of a schema (plans hold the schema's types, so each has its own)."""
    cache = _caches.get(schema)
    if cache is None:
        cache = _caches[schema] = PlanCache()
    return cache


class AcyclicExecutor(StrawberryGraphQLCoreExecutionContext):
    """graphql-core's executor, minus a reference cycle: it binds its resolver helpers to the
    executor it stores them on, so the executor, and through `context_value` everything the
    request loaded, waited for the cyclic garbage collector instead of going with the request.
    Under load that collector then freed a couple of hundred requests' rows at once, in pauses
    of 20 to 60 ms: the latency's 99th percentile (docs/benchmarks.md)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        executor = weakref.proxy(self)  # alive while it executes: the helpers run only then
        self.async_helpers = GraphQLResolveInfoHelpers(
            gather=lambda works: executor.gather_async_work(works),
            track=lambda work: executor.track_async_work(work),
        )


class CompiledExecutor(AcyclicExecutor):
    """Runs an operation's cached plan when there is one; graphql-core's executor otherwise,
    and also when a compiled attempt gives up (see `graphql_api.compiled.run`)."""

    def execute_operation(self, serially: bool | None = None) -> AwaitableOrValue[Any]:
        plan = self._plan() if serially is None else None
        if plan is None:
            outcomes["reference"] += 1
            return super().execute_operation(serially)
        outcome = Run(self, plan).start()
        if outcome is None:
            return self._reference()
        if isinstance(outcome, ExecutionResult):
            outcomes["compiled"] += 1
            return outcome
        return self._finish(outcome)

    async def _finish(self, outcome: Awaitable[ExecutionResult | None]) -> Any:
        result = await outcome
        if result is not None:
            outcomes["compiled"] += 1
            return result
        reference = self._reference()
        return await reference if self.is_awaitable(reference) else reference

    def _reference(self) -> AwaitableOrValue[Any]:
        outcomes["rerun"] += 1
        self.before_reference_run(self.context_value)
        return super().execute_operation()

    def before_reference_run(self, context: Any) -> None:
        """Called when a compiled attempt gave up, before graphql-core runs the operation: undo
        what the attempt left behind that would change the run (override to clear caches)."""

    def _plan(self) -> Plan | None:
        if not self._plannable():
            return None
        return plan_cache(self.schema).plan_for(self)

    def _plannable(self) -> bool:
        # Queries only: a compiled attempt may give up and leave the operation to the
        # reference executor, which is only harmless when nothing was written.
        manager = self.middleware_manager
        return (
            self.operation.operation is OperationType.QUERY
            and (manager is None or not manager.middlewares)
            and self.abort_signal is None
            and self.hooks is None
            and self.error_propagation
        )
