"""Every relationship of the schema resolves through one of these per-request dataloaders.

A fresh `Loaders` is built for each request (and after each mutation), so nothing cached can
cross from one user or one write to another. Loads of one tick are batched into one call of
the data layer, which sends one statement; keys the user does not own come back empty.
With `batch=False` (the benchmark's naive mode) each key costs a statement of its own.
Given a tracer (tracing on), each batch runs in a span of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from functools import cached_property
from typing import Any, TypeVar

from aiodataloader import DataLoader
from opentelemetry.trace import Tracer

from graphql_api.conversations import repository as conversations
from graphql_api.db import RequestDb
from graphql_api.errors import NotFound
from graphql_api.pagination import Page, PageArgs
from graphql_api.relay import decode_uuid
from graphql_api.sql import Record
from graphql_api.tags import repository as tags
from graphql_api.tasks import repository as tasks
from graphql_api.tracing import traced_batch

K = TypeVar("K")
V = TypeVar("V")


class Loaders:
    """The dataloaders of one request, named by what they return and what they are keyed by."""

    def __init__(self, db: RequestDb, *, batch: bool = True, tracer: Tracer | None = None) -> None:
        self._db = db
        self._batch = batch
        self._tracer = tracer
        self._paged: dict[tuple[Any, ...], DataLoader[Any, Any]] = {}

    # Each loader is made when a request first asks for it: most operations use two or three
    # of them, and a request builds its `Loaders` anew (and again after each mutation).
    @cached_property
    def task_by_id(self) -> DataLoader[uuid.UUID, Record | None]:
        return self._loader(tasks.get_tasks, default=None)

    @cached_property
    def tag_by_id(self) -> DataLoader[uuid.UUID, Record | None]:
        return self._loader(tags.get_tags, default=None)

    @cached_property
    def conversation_by_id(self) -> DataLoader[uuid.UUID, Record | None]:
        return self._loader(conversations.get_conversations, default=None)

    @cached_property
    def message_by_id(self) -> DataLoader[uuid.UUID, Record | None]:
        return self._loader(conversations.get_messages, default=None)

    @cached_property
    def tags_by_task_id(self) -> DataLoader[uuid.UUID, list[Record]]:
        return self._list_loader(tags.tags_of_tasks)

    @cached_property
    def subtasks_by_task_id(self) -> DataLoader[uuid.UUID, list[Record]]:
        return self._list_loader(tasks.subtasks_of)

    @cached_property
    def parents_by_task_id(self) -> DataLoader[uuid.UUID, list[Record]]:
        return self._list_loader(tasks.parents_of)

    @cached_property
    def task_count_by_tag_id(self) -> DataLoader[uuid.UUID, int]:
        return self._loader(tags.count_tasks_of_tags, default=0)

    @cached_property
    def message_count_by_conversation_id(self) -> DataLoader[uuid.UUID, int]:
        return self._loader(conversations.count_messages_of_conversations, default=0)

    def _loader(self, fetch: Callable[..., Mapping[Any, V]], *, default: V) -> DataLoader[Any, V]:
        db = self._db

        async def load(keys: list[Any]) -> list[V]:
            found = await db.read(fetch, keys)
            return [found.get(key, default) for key in keys]

        return self._dataloader(fetch.__name__, load)

    def _list_loader(
        self, fetch: Callable[..., Mapping[Any, list[Record]]]
    ) -> DataLoader[Any, list[Record]]:
        db = self._db

        async def load(keys: list[Any]) -> list[list[Record]]:
            found = await db.read(fetch, keys)
            return [found.get(key, []) for key in keys]

        return self._dataloader(fetch.__name__, load)

    def _paged_loader(
        self, name: str, fetch: Callable[..., Mapping[Any, Page]], page: PageArgs
    ) -> DataLoader[uuid.UUID, Page]:
        """One loader per distinct page arguments: parents asking the same page share a batch."""
        key = (name, page)
        if key not in self._paged:
            db = self._db

            async def load(keys: list[uuid.UUID]) -> list[Page]:
                found = await db.read(fetch, keys, page)
                return [found.get(key, Page.empty()) for key in keys]

            self._paged[key] = self._dataloader(fetch.__name__, load)
        return self._paged[key]

    def _dataloader(
        self, name: str, load: Callable[[list[K]], Coroutine[Any, Any, list[V]]]
    ) -> DataLoader[K, V]:
        if self._tracer is not None:
            load = traced_batch(self._tracer, name, load)
        return DataLoader(load, batch=self._batch)

    # Counts through these: a page usually knows its total, and its loader is then never made.
    def count_tasks_of_tag(self, tag_id: uuid.UUID) -> Awaitable[int]:
        return self.task_count_by_tag_id.load(tag_id)

    def count_messages_of_conversation(self, conversation_id: uuid.UUID) -> Awaitable[int]:
        return self.message_count_by_conversation_id.load(conversation_id)

    def tasks_page_by_tag_id(self, page: PageArgs) -> DataLoader[uuid.UUID, Page]:
        return self._paged_loader("tasks_by_tag", tags.tasks_of_tags, page)

    def messages_page_by_conversation_id(self, page: PageArgs) -> DataLoader[uuid.UUID, Page]:
        return self._paged_loader(
            "messages_by_conversation", conversations.messages_of_conversations, page
        )


async def load_existing(loader: DataLoader[Any, Record | None], key: Any, what: str) -> Record:
    """The row `loader` finds for `key`; NOT_FOUND (missing, or another user's) otherwise."""
    row = await loader.load(key)
    if row is None:
        raise NotFound(what)
    return row


async def load_by_global_id(
    loader: DataLoader[Any, Record | None], global_id: str, type_name: str
) -> Record | None:
    """The row of a `type_name` global ID, or None: for a lookup such as `task(id:)`, where
    "there is none" is an answer, not an error. Missing, another user's (the loader finds only
    the caller's rows), another type's and malformed ids all answer None alike."""
    try:
        key = decode_uuid(global_id, type_name)
    except NotFound:
        return None
    return await loader.load(key)


async def load_all(loader: DataLoader[K, V], keys: Sequence[K]) -> list[V]:
    """`loader.load_many(keys)` without its `gather`: every key is asked in this tick (one
    batch), then the futures are awaited in turn (all settle together). If the batch fails,
    every future's exception is retrieved, as `gather` would, and the first is raised."""
    futures = [loader.load(key) for key in keys]
    try:
        return [await future for future in futures]
    except Exception:
        for future in futures:
            if future.done() and not future.cancelled():
                future.exception()
        raise
