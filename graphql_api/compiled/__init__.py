"""A compiled execution path: cached plans run breadth-first instead of graphql-core's
per-field machinery, giving the same response (see docs/compiled-execution.md).

Use it by passing `CompiledExecutor` (or a subclass) as a Strawberry schema's
`execution_context_class`; everything else about the schema stays as it is.
"""

from graphql_api.compiled.executor import (
    AcyclicExecutor,
    CompiledExecutor,
    PlanCache,
    outcomes,
    plan_cache,
)

__all__ = ["AcyclicExecutor", "CompiledExecutor", "PlanCache", "outcomes", "plan_cache"]
