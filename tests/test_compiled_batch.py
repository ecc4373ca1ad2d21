"""Per-level resolvers (`graphql_api.compiled.batch`): the compiled path calls a field's batch
function once per level with all its parents, graphql-core calls the resolver once per parent,
and the answers are identical, errors included (a failing batch falls back to the resolvers).

The API's own batched fields are compared on real data in tests/test_compiled_differential.py.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest
import strawberry

from graphql_api.compiled import CompiledExecutor, outcomes
from graphql_api.compiled.batch import batch_of, batched

calls: Counter[str] = Counter()


def _books(shelf: Shelf, first: int, context: dict[str, Any]) -> list[Book]:
    if shelf.row in context.get("bad_rows", ()):
        raise ValueError(f"shelf {shelf.row} is broken")
    return [Book(title=f"{shelf.row}.{n}", shelf_row=shelf.row) for n in range(first)]


async def books_of_shelves(
    shelves: Sequence[Shelf], context: dict[str, Any], first: int = 2
) -> list[Any]:
    calls["books batch"] += 1
    if context.get("fail_batch"):
        raise RuntimeError("the batch failed")
    if context.get("short_batch"):
        return []
    found: list[Any] = []
    for shelf in shelves:
        try:
            found.append(_books(shelf, first, context))
        except ValueError as error:  # stands for what this parent's resolver raises
            found.append(error)
    return found


async def authors_of_books(books: Sequence[Book], context: dict[str, Any]) -> list[str | None]:
    calls["author batch"] += 1
    return [None if book.title.endswith(".1") else f"author of {book.title}" for book in books]


@strawberry.type
class Book:
    title: str
    shelf_row: strawberry.Private[int]

    @strawberry.field
    @batched(authors_of_books)
    async def author(self) -> str | None:
        calls["author"] += 1
        return None if self.title.endswith(".1") else f"author of {self.title}"

    @strawberry.field
    @batched(authors_of_books)
    async def strict_author(self) -> str:
        calls["author"] += 1
        return None if self.title.endswith(".1") else f"author of {self.title}"  # type: ignore[return-value]


@strawberry.type
class Shelf:
    row: int

    @strawberry.field
    @batched(books_of_shelves)
    async def books(self, info: strawberry.Info, first: int = 2) -> list[Book]:
        calls["books"] += 1
        return _books(self, first, info.context)


@strawberry.type
class Query:
    @strawberry.field
    def shelves(self, count: int = 3) -> list[Shelf]:
        return [Shelf(row=row) for row in range(count)]


reference = strawberry.Schema(Query)
compiled = strawberry.Schema(Query, execution_context_class=CompiledExecutor)


def as_json(result: Any) -> str:
    errors = [error.formatted for error in result.errors] if result.errors else None
    return json.dumps({"data": result.data, "errors": errors})


async def same(query: str, **context: Any) -> tuple[str, Counter[str], Counter[str]]:
    """Both executors' JSON (which must be identical), with the compiled run's calls and
    outcome."""
    expected = await reference.execute(query, context_value=dict(context))
    calls.clear()
    before = Counter(outcomes)
    got = await compiled.execute(query, context_value=dict(context))
    assert as_json(got) == as_json(expected)
    return as_json(got), Counter(calls), Counter(outcomes) - before


async def test_one_batch_call_per_field_per_level() -> None:
    answer, made, outcome = await same(
        "{ shelves(count: 4) { row books(first: 3) { title author } more: books { title } } }"
    )
    assert made == {"books batch": 2, "author batch": 1}  # 4 shelves, 12 books: 3 calls
    assert outcome == {"compiled": 1}
    assert json.loads(answer)["data"]["shelves"][3]["books"][2] == {
        "title": "3.2",
        "author": "author of 3.2",
    }


async def test_an_exception_as_value_is_that_parents_error() -> None:
    answer, made, outcome = await same("{ shelves { row books { title } } }", bad_rows={1})
    assert made == {"books batch": 1}
    assert outcome == {"compiled": 1}
    assert [error["path"] for error in json.loads(answer)["errors"]] == [["shelves", 1, "books"]]


async def test_null_in_a_non_null_slot_propagates_like_the_resolvers() -> None:
    _, _, outcome = await same("{ shelves(count: 1) { books { title strictAuthor } } }")
    assert outcome == {"compiled": 1}  # one error: "2.1" has no author


async def test_two_errors_give_up_to_graphql_core() -> None:
    _, _, outcome = await same("{ shelves { books { title } } }", bad_rows={0, 2})
    assert outcome == {"rerun": 1}


@pytest.mark.parametrize("failure", ["fail_batch", "short_batch"])
async def test_a_failing_batch_falls_back_to_the_resolvers(failure: str) -> None:
    _, made, outcome = await same("{ shelves { books { title author } } }", **{failure: True})
    assert made["books batch"] == 1
    assert made["books"] == 3  # the resolvers answered instead
    assert outcome == {"compiled": 1}
    _, made, outcome = await same(
        "{ shelves { books { title } } }", bad_rows={2}, **{failure: True}
    )
    assert made["books"] == 3
    assert outcome == {"compiled": 1}  # the resolvers' one error, not the batch's


def test_only_asynchronous_functions_are_batched() -> None:
    assert batch_of(Book.author) is authors_of_books

    def sync(parents: Sequence[Any], context: Any) -> list[Any]:
        return []

    with pytest.raises(TypeError):
        batched(sync)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        batched(authors_of_books)(lambda self: None)
