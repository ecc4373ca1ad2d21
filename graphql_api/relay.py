"""Relay building blocks: the `Node` interface, opaque global IDs, and cursor connections."""

from __future__ import annotations

import asyncio
import base64
import binascii
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

import strawberry
from graphql import (
    BooleanValueNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    SelectionNode,
    SelectionSetNode,
    VariableNode,
)

from graphql_api.compiled.batch import batched
from graphql_api.errors import NotFound
from graphql_api.pagination import Page, PageArgs
from graphql_api.sql import Record

T = TypeVar("T")


@strawberry.interface(description="An object with a globally unique, opaque ID (Relay).")
class Node:
    id: strawberry.ID = strawberry.field(
        description="Opaque global ID: refetch the object with `node(id:)`."
    )


def encode_id(type_name: str, raw_id: object) -> strawberry.ID:
    """The global ID of a row: base64 of `Type:id`."""
    return strawberry.ID(base64.urlsafe_b64encode(f"{type_name}:{raw_id}".encode()).decode())


def decode_id(global_id: str) -> tuple[str, str]:
    """(type name, raw id) of a global ID; NOT_FOUND if it is not one of ours."""
    try:
        type_name, _, raw_id = base64.urlsafe_b64decode(global_id.encode()).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise NotFound("Object") from None
    if not type_name or not raw_id:
        raise NotFound("Object")
    return type_name, raw_id


def decode_uuid(global_id: str, type_name: str) -> uuid.UUID:
    """The row id inside a global ID of `type_name`; NOT_FOUND for any other ID."""
    try:
        found_type, raw_id = decode_id(global_id)
    except NotFound:
        raise NotFound(type_name) from None
    if found_type != type_name:
        raise NotFound(type_name)
    return parse_uuid(raw_id, type_name)


def parse_uuid(raw_id: str, type_name: str) -> uuid.UUID:
    """The row id of a decoded global ID; NOT_FOUND if it is not a UUID."""
    try:
        return uuid.UUID(raw_id)
    except ValueError:
        raise NotFound(type_name) from None


def decode_uuids(global_ids: Sequence[str], type_name: str) -> list[uuid.UUID]:
    return [decode_uuid(global_id, type_name) for global_id in global_ids]


@strawberry.input(description="Guards an update against overwriting changes made meanwhile.")
class GuardedUpdate:
    expected_updated_at: datetime | None = strawberry.field(
        default=None,
        description="The `updatedAt` you read. If the object changed since, nothing is "
        "written and the answer is CONFLICT with the current values in `extensions.current`.",
    )


@strawberry.type(description="Where a page sits in its list (Relay).")
class PageInfo:
    has_next_page: bool = strawberry.field(description="More items follow this page.")
    has_previous_page: bool = strawberry.field(
        description="Items precede this page. Paging forward, true whenever `after` was given."
    )
    start_cursor: str | None = strawberry.field(
        resolver=lambda root: root.page.cursor(0) if root.page.rows else None,
        description="Cursor of the first item of the page; null when the page is empty.",
    )
    end_cursor: str | None = strawberry.field(
        resolver=lambda root: root.page.cursor(-1) if root.page.rows else None,
        description="Cursor of the last item of the page; null when the page is empty.",
    )
    page: strawberry.Private[Page]  # cursors are made when asked for


@strawberry.type(description="An item of a connection with its cursor.")
class Edge(Generic[T]):
    cursor: str = strawberry.field(
        resolver=lambda root: root.page.cursor(root.index),
        description="Opaque position of this item; pass it as `after` or `before`.",
    )
    node: T = strawberry.field(description="The item.")
    page: strawberry.Private[Page]  # the cursor is made when asked for
    index: strawberry.Private[int]  # of the item in its page


async def total_counts(connections: Sequence[Connection[T]], context: object) -> list[object]:
    """`Connection.totalCount` for a level's connections (`graphql_api.compiled.batch`). A
    page whose statement counted its list knows its total; the other counts are started at
    once, so the loaders behind them batch; each one's error is its value. Counts answered by
    a dataloader are futures (and a lone count needs no task): awaited in turn, without a task
    each."""
    counts: list[object] = [connection.page.total for connection in connections]
    pending = [(i, connections[i].count()) for i, total in enumerate(counts) if total is None]
    if len(pending) > 1 and not all(asyncio.isfuture(count) for _, count in pending):
        outcomes = await asyncio.gather(*(count for _, count in pending), return_exceptions=True)
        for (index, _), outcome in zip(pending, outcomes, strict=True):
            if isinstance(outcome, BaseException) and not isinstance(outcome, Exception):
                raise outcome  # cancellation is not a field error
            counts[index] = outcome
        return counts
    for index, awaitable in pending:
        try:
            counts[index] = await awaitable
        except Exception as error:
            counts[index] = error
    return counts


@strawberry.type(description="A page of a list, with cursors to fetch the pages around it (Relay).")
class Connection(Generic[T]):
    edges: list[Edge[T]] = strawberry.field(
        resolver=lambda root: [
            Edge(page=root.page, index=index, node=node) for index, node in enumerate(root.nodes)
        ],
        description="The items of this page with cursors.",
    )
    page_info: PageInfo = strawberry.field(description="Whether there are more pages.")
    nodes: list[T] = strawberry.field(description="The items of this page, without cursors.")
    # Edges and cursors are made when asked for: many clients read `nodes` only.
    page: strawberry.Private[Page]
    count: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field(description="How many items the whole list holds, across all pages.")
    @batched(total_counts)
    async def total_count(self) -> int:
        total = self.page.total
        return total if total is not None else await self.count()


def selects_total_count(info: strawberry.Info[Any, Any]) -> bool:
    """Whether the connection a resolver returns is asked for `totalCount` (at its first
    level, `@skip`/`@include` applied, fragments followed): then its page's statement counts
    the list too, instead of a statement of its own after it."""
    raw = info._raw_info  # graphql-core's info, or the compiled executor's look-alike
    variables = info.variable_values
    fragments = raw.fragments
    return any(
        _selects(node.selection_set, "totalCount", fragments, variables) for node in raw.field_nodes
    )


def _selects(
    selection_set: SelectionSetNode | None,
    name: str,
    fragments: dict[str, FragmentDefinitionNode],
    variables: dict[str, Any],
) -> bool:
    for selection in selection_set.selections if selection_set else ():
        if not _included(selection, variables):
            continue
        if isinstance(selection, FieldNode):
            if selection.name.value == name:
                return True
            continue
        if isinstance(selection, FragmentSpreadNode):
            fragment: InlineFragmentNode | FragmentDefinitionNode = fragments[selection.name.value]
        else:
            assert isinstance(selection, InlineFragmentNode)
            fragment = selection
        if _selects(fragment.selection_set, name, fragments, variables):
            return True
    return False


def _included(node: SelectionNode, variables: dict[str, Any]) -> bool:
    """`@skip(if:)` and `@include(if:)` of a validated document (a Boolean! literal or
    variable each)."""
    for directive in node.directives or ():
        skip = directive.name.value == "skip"
        if skip or directive.name.value == "include":
            value = directive.arguments[0].value if directive.arguments else None
            if isinstance(value, VariableNode):
                condition = variables.get(value.name.value)
            else:
                condition = isinstance(value, BooleanValueNode) and value.value
            if skip == bool(condition):
                return False
    return True


def to_connection(
    page: Page, make: Callable[[Record], T], count: Callable[[], Awaitable[int]]
) -> Connection[T]:
    """A connection from a data-layer page; `count` runs only if `totalCount` is asked, and
    not at all when the page's statement counted the list (`page.total`)."""
    info = PageInfo(has_next_page=page.has_next, has_previous_page=page.has_previous, page=page)
    nodes = [make(row) for row in page.rows]
    return Connection(page=page, page_info=info, nodes=nodes, count=count)


First = Annotated[
    int | None,
    strawberry.argument(
        description="Page size from the start (or from `after`): at most 100, default 20."
    ),
]
After = Annotated[str | None, strawberry.argument(description="Return items after this cursor.")]
Last = Annotated[
    int | None,
    strawberry.argument(description="Page size from the end (or from `before`): at most 100."),
]
Before = Annotated[str | None, strawberry.argument(description="Return items before this cursor.")]


def page_args(
    first: int | None, after: str | None, last: int | None, before: str | None
) -> PageArgs:
    return PageArgs(first=first, after=after, last=last, before=before)
