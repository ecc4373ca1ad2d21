"""Per-level resolvers: one call for all the parent objects of a level instead of one each.

A resolver that only loads something by its parent's key and builds objects from it can
declare a batch form with `@batched(function)`, placed under `@strawberry.field` so that both
stay side by side in the domain's types module:

    async def tags_of_tasks(tasks: Sequence[Task], context: Context) -> list[list[Tag]]:
        rows = await load_all(context.loaders.tags_by_task_id, [t.row_id for t in tasks])
        return [[Tag.from_row(row) for row in found] for found in rows]

    @strawberry.field(description="...")
    @batched(tags_of_tasks)
    async def tags(self, info: Info) -> list[Tag]:
        ...

The batch function is awaited with the list of parent objects, the request's context and the
field's converted arguments (by their Python names), and returns one value per parent, in
order: exactly what the resolver would have returned for each. Strawberry and graphql-core
never see the mark: they call the resolver once per parent, as always. The compiled executor
(`graphql_api.compiled.plan`) calls the batch function once per field per level; if it
raises, it calls the resolver once per parent instead, so that errors are exactly the
resolver's.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

BatchFunction = Callable[..., Awaitable[Sequence[Any]]]
"""`async (parents, context, **arguments) -> one value per parent`."""

F = TypeVar("F", bound=Callable[..., Any])

ATTRIBUTE = "__compiled_batch__"


def batched(batch: BatchFunction) -> Callable[[F], F]:
    """Declare `batch` as the per-level form of the decorated resolver (see the module)."""
    if not inspect.iscoroutinefunction(batch):
        raise TypeError(f"{batch!r}: a batch function must be `async def`")

    def mark(resolver: F) -> F:
        if not inspect.iscoroutinefunction(resolver):
            raise TypeError(f"{resolver!r}: only asynchronous resolvers take a batch form")
        setattr(resolver, ATTRIBUTE, batch)
        return resolver

    return mark


def batch_of(resolver: Callable[..., Any]) -> BatchFunction | None:
    """The batch function declared for `resolver`, if any."""
    batch: BatchFunction | None = getattr(resolver, ATTRIBUTE, None)
    return batch
