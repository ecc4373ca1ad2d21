"""The compiled execution path against graphql-core's executor, on a schema made to exercise
every rule of value completion (leaves, lists, nulls, objects, interfaces, unions), every way a
resolver can be declared, and errors at every kind of position. Each operation runs through
both executors in-process; the JSON must be identical, key order included.

The API's own schema and data are compared in tests/test_compiled_differential.py.
"""

from __future__ import annotations

import asyncio
import enum
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime
from typing import Annotated, Any

import pytest
import strawberry
from graphql import ExecutionResult as GraphQLExecutionResult
from strawberry.extensions import FieldExtension
from strawberry.types.base import StrawberryObjectDefinition

from graphql_api.compiled import CompiledExecutor, outcomes, plan_cache


@strawberry.enum
class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


@strawberry.input
class Window:
    start: int = 0
    size: int = 2
    colors: list[Color] | None = None


class Upper(FieldExtension):
    """A field extension: such fields go through Strawberry's own resolver wrapper."""

    def resolve(self, next_: Any, source: Any, info: strawberry.Info, **kwargs: Any) -> Any:
        return str(next_(source, info, **kwargs)).upper()


@strawberry.interface
class Named:
    name: str


@strawberry.type
class Leaf(Named):
    value: int
    when: datetime | None = None
    day: date | None = None
    color: Color | None = None
    ident: strawberry.ID | None = None
    ratio: float | None = None
    uid: uuid.UUID | None = None
    raw: strawberry.Private[Any] = None

    @strawberry.field
    def shout(self) -> str:
        return self.name

    @strawberry.field(extensions=[Upper()])
    def loud(self) -> str:
        return self.name

    @strawberry.field
    def anything(self) -> int | None:
        return self.raw  # type: ignore[no-any-return]

    @strawberry.field
    def strict(self) -> int:
        return self.raw  # type: ignore[no-any-return]

    @strawberry.field
    def text(self) -> str | None:
        return self.raw  # type: ignore[no-any-return]

    @strawberry.field
    def tint(self) -> Color | None:
        return self.raw  # type: ignore[no-any-return]

    @strawberry.field
    async def later(self, info: strawberry.Info) -> int:
        await asyncio.sleep(0)
        return self.value * 10 + len(info.path.as_list())

    @strawberry.field
    async def fail(self, message: str = "boom") -> int:
        raise ValueError(message)

    @strawberry.field
    def fail_soft(self, message: str = "soft") -> int | None:
        raise ValueError(message)

    @strawberry.field
    def path(self, info: strawberry.Info) -> list[str]:
        return [str(key) for key in info.path.as_list()] + [info.field_name]

    @strawberry.field
    def selected(self, info: strawberry.Info) -> list[str]:
        return [field.name for field in info.selected_fields]


@strawberry.type
class Other(Named):
    size: int


@strawberry.type
class Impostor:
    name: str


Thing = Annotated[Leaf | Other, strawberry.union("Thing")]


def _leaves(count: int, **extra: Any) -> list[Leaf]:
    return [Leaf(name=f"leaf{i}", value=i, **extra) for i in range(count)]


@strawberry.type
class Box:
    label: str

    @strawberry.field
    def items(self, first: int = 2, after: int | None = None) -> list[Leaf]:
        start = 0 if after is None else after + 1
        return _leaves(start + first)[start:]

    @strawberry.field
    async def async_items(self, window: Window | None = None) -> list[Leaf]:
        window = window or Window()
        leaves = _leaves(window.start + window.size)[window.start :]
        if window.colors:
            for leaf, color in zip(leaves, window.colors, strict=False):
                leaf.color = color
        return leaves

    @strawberry.field
    def nullable_items(self) -> list[Leaf | None]:
        return [Leaf(name="a", value=1), None, Leaf(name="b", value=2)]

    @strawberry.field
    def strict_items(self, with_none: bool = False) -> list[Leaf]:
        return [Leaf(name="a", value=1), *([None] if with_none else [])]  # type: ignore[list-item]

    @strawberry.field
    def matrix(self) -> list[list[int | None]]:
        return [[1, None], [], [3]]

    @strawberry.field
    def not_a_list(self) -> list[int] | None:
        return 3  # type: ignore[return-value]

    @strawberry.field
    def tuple_items(self) -> list[int]:
        return (1, 2, 3)  # type: ignore[return-value]

    @strawberry.field
    def generated(self) -> list[int]:
        return (n * n for n in range(3))  # type: ignore[return-value]

    @strawberry.field
    def bad_ints(self) -> list[int | None]:
        return [1, 2**40, "x", 4]  # type: ignore[list-item]

    @strawberry.field
    def wrong_object(self) -> Leaf | None:
        return Impostor(name="nope")  # type: ignore[return-value]

    @strawberry.field
    def things(self) -> list[Thing]:
        return [Leaf(name="l", value=1), Other(name="o", size=2)]

    @strawberry.field
    def named(self) -> list[Named]:
        return [Other(name="o", size=3), Leaf(name="l", value=4)]


@strawberry.type
class Query:
    @strawberry.field
    def box(self) -> Box:
        return Box(label="box")

    @strawberry.field
    def maybe_box(self) -> Box | None:
        return Box(label="maybe")

    @strawberry.field
    async def leaf(self, value: int = 1, raw: strawberry.scalars.JSON | None = None) -> Leaf | None:
        return Leaf(
            name=f"leaf{value}",
            value=value,
            when=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
            day=date(2030, 1, 2),
            color=Color.GREEN,
            ident=strawberry.ID(str(value)),
            ratio=value / 4,
            uid=uuid.UUID(int=value),
            raw=raw,
        )

    @strawberry.field
    def int_id(self) -> strawberry.ID:
        return 42  # type: ignore[return-value]

    @strawberry.field
    def root_name(self, root: Any, info: strawberry.Info) -> str:
        return f"{type(root).__name__}:{info.field_name}"

    @strawberry.field
    def parent_name(self, parent: strawberry.Parent[Any]) -> str:
        return type(parent).__name__

    @strawberry.field
    def echo(self, colors: list[Color], window: Window | None = None) -> str:
        return json.dumps([[c.name for c in colors], window and window.size])

    @strawberry.field
    def context_value(self, info: strawberry.Info) -> str:
        return str(info.context["tag"])

    @strawberry.field
    def variables(self, info: strawberry.Info) -> str:
        return json.dumps(sorted(info.variable_values))

    @strawberry.field
    def must(self) -> str:
        return None  # type: ignore[return-value]

    @strawberry.field
    async def must_async(self) -> str:
        return None  # type: ignore[return-value]


@strawberry.type
class Mutation:
    @strawberry.mutation
    def touch(self) -> Box:
        return Box(label="touched")


reference = strawberry.Schema(Query, mutation=Mutation)
compiled = strawberry.Schema(Query, mutation=Mutation, execution_context_class=CompiledExecutor)


def as_json(result: Any) -> str:
    errors = [error.formatted for error in result.errors] if result.errors else None
    return json.dumps({"data": result.data, "errors": errors})


@pytest.fixture
def counted() -> Iterator[dict[str, int]]:
    before = dict(outcomes)
    seen: dict[str, int] = {}
    yield seen
    seen.update({key: outcomes[key] - before.get(key, 0) for key in outcomes})


async def same(query: str, variables: dict[str, Any] | None = None, **kwargs: Any) -> str:
    """Run `query` through both executors; their JSON must be identical. Returns it."""
    context = {"tag": "ctx"}
    expected = await reference.execute(query, variables, context, **kwargs)
    got = await compiled.execute(query, variables, context, **kwargs)
    assert as_json(got) == as_json(expected)
    return as_json(got)


def path_of(outcome: str) -> Any:
    return [error["path"] for error in json.loads(outcome)["errors"] or []]


def compiled_answered(before: dict[str, int]) -> int:
    return outcomes["compiled"] - before.get("compiled", 0)


LEAVES = "name value when day color ident ratio uid shout loud __typename"


@pytest.mark.parametrize(
    "query",
    [
        f"{{ leaf {{ {LEAVES} }} }}",
        f"{{ leaf(value: 3) {{ {LEAVES} later path selected }} }}",
        "{ box { label items { name later } asyncItems { name value color } } }",
        "{ box { items(first: 3, after: 0) { name } matrix tupleItems generated } }",
        "{ box { nullableItems { name } } intId rootName parentName contextValue }",
        "{ box { things { __typename ... on Leaf { value } ... on Other { size } } } }",
        "{ box { named { name __typename ... on Other { size } ...L } } } fragment L on Leaf { value }",
        "{ a: leaf(value: 2) { n: name } b: leaf(value: 3) { n: value } }",
        "{ leaf { name } leaf { value name } box { items { name } items { value } } }",
        "{ box { items { path } async: asyncItems { p: path } } }",
        "{ leaf(raw: 7) { anything strict text tint } }",
        '{ leaf(raw: "RED") { text } }',
        "{ echo(colors: [RED, GREEN], window: {size: 4}) }",
        "{ __typename box { __typename items { __typename } } }",
    ],
)
async def test_answers_like_graphql_core(query: str) -> None:
    before = dict(outcomes)
    await same(query)
    assert compiled_answered(before) == 1


@pytest.mark.parametrize(
    ("query", "paths", "native"),
    [
        # a nullable field: nulled where it is
        ("{ leaf { value failSoft } }", [["leaf", "failSoft"]], True),
        # a non-null field: its object is nulled, and a nullable object stops it
        ("{ leaf { value fail } box { label } }", [["leaf", "fail"]], True),
        ('{ leaf { name must: fail(message: "m") } }', [["leaf", "must"]], True),
        # up through non-null lists and objects to the whole data
        ("{ box { items { name fail } } }", None, False),
        ("{ box { strictItems(withNone: true) { name } } }", [["box", "strictItems", 1]], True),
        (
            "{ maybeBox { strictItems(withNone: true) { name } } }",
            [["maybeBox", "strictItems", 1]],
            True,
        ),
        ("{ must }", [["must"]], True),
        ("{ mustAsync leaf { name } }", [["mustAsync"]], True),
        # completion errors: leaves, lists, objects
        ('{ leaf(raw: "x") { anything } }', [["leaf", "anything"]], True),
        ("{ leaf(raw: 3000000000) { anything } }", [["leaf", "anything"]], True),
        ('{ leaf(raw: "x") { strict } }', [["leaf", "strict"]], True),
        ("{ leaf(raw: {a: 1}) { text } }", [["leaf", "text"]], True),
        ('{ leaf(raw: "BLUE") { tint } }', [["leaf", "tint"]], True),
        ("{ box { notAList } }", [["box", "notAList"]], True),
        ("{ box { wrongObject { name } } }", [["box", "wrongObject"]], True),
        ("{ maybeBox { label nullableItems { name fail } } }", None, False),
    ],
)
async def test_errors_like_graphql_core(query: str, paths: list[Any] | None, native: bool) -> None:
    """One error is answered on the compiled path; more go to graphql-core (see below)."""
    before = dict(outcomes)
    outcome = await same(query)
    if paths is not None:
        assert path_of(outcome) == paths
    assert compiled_answered(before) == int(native)


async def test_a_single_error_is_answered_on_the_compiled_path() -> None:
    before = dict(outcomes)
    await same("{ maybeBox { strictItems(withNone: true) { name } } leaf { name } }")
    assert compiled_answered(before) == 1


async def test_several_errors_are_left_to_graphql_core() -> None:
    """Which errors graphql-core reports, and in which order, follows its schedule: a second
    error hands the operation over, so the answer is graphql-core's own."""
    before = dict(outcomes)
    outcome = await same("{ box { nullableItems { name } badInts } leaf { failSoft } }")
    assert len(path_of(outcome)) == 3
    assert outcomes["rerun"] - before.get("rerun", 0) == 1


async def test_variables_and_directives_make_their_own_plans() -> None:
    query = """
      query Q($n: Int = 2, $skip: Boolean!, $show: Boolean = true, $w: Window) {
        box {
          items(first: $n) { name @skip(if: $skip) value @include(if: $show) }
          ... on Box @skip(if: $skip) { label }
          ...More @include(if: $show)
          asyncItems(window: $w) { name color }
        }
      }
      fragment More on Box { matrix }
    """
    cache = plan_cache(compiled._schema)
    for variables in (
        {"skip": True},
        {"skip": False, "show": False, "n": 3},
        {"skip": False, "w": {"start": 1, "size": 3, "colors": ["RED", "GREEN"]}},
        {"skip": True, "show": None},
    ):
        await same(query, variables)
    key = next(key for key in cache.operations if "query Q(" in key[0])
    plans = cache.operations[key].plans  # by ($show, $skip)
    assert [variant for variant, plan in plans.items() if plan] == [
        (True, True),
        (False, False),
        (True, False),
    ]
    # An explicit null for @include(if:) is an error graphql-core reports while executing:
    # that variant has no plan, and graphql-core answers it.
    assert plans[(None, True)] is None


async def test_variable_and_argument_errors_are_graphql_cores() -> None:
    await same("query($n: Int!) { box { items(first: $n) { name } } }", {"n": "x"})
    await same(
        "query($w: Window) { box { asyncItems(window: $w) { name } } }", {"w": {"size": "x"}}
    )
    await same("query A { leaf { name } } query B { box { label } }", operation_name="B")


async def test_info_sees_variables_context_and_path() -> None:
    outcome = await same(
        "query($x: Int = 1) { variables contextValue box { items(first: $x) { path } } }"
    )
    assert '"ctx"' in outcome
    assert '"box", "items", "0", "path", "path"' in outcome


async def test_introspection_and_mutations_stay_on_graphql_core() -> None:
    before = dict(outcomes)
    await same("{ __schema { queryType { name } } }")
    await same('{ __type(name: "Leaf") { name } box { label } }')
    await same("mutation { touch { label items { name } } }")
    assert compiled_answered(before) == 0
    assert outcomes["reference"] - before.get("reference", 0) == 3


def test_sync_execution_gives_the_same_answer() -> None:
    """Without asynchronous resolvers the compiled path answers synchronously too."""
    query = "{ box { label items { name shout } matrix } intId }"
    expected = reference.execute_sync(query)
    got = compiled.execute_sync(query)
    assert as_json(got) == as_json(expected)


async def test_a_resolver_returning_an_async_iterable_is_left_to_graphql_core() -> None:
    async def numbers() -> AsyncIterator[int]:
        yield 1

    @strawberry.type
    class StreamQuery:
        @strawberry.field
        def numbers(self) -> list[int]:
            return numbers()  # type: ignore[return-value]

    for schema in (
        strawberry.Schema(StreamQuery),
        strawberry.Schema(StreamQuery, execution_context_class=CompiledExecutor),
    ):
        result = await schema.execute("{ numbers }")
        assert result.data == {"numbers": [1]}


async def test_a_failure_of_the_compiled_path_itself_is_answered_by_graphql_core(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug of the executor is logged, and the operation is answered as if it had no plan.
    (An exception while completing a value is a field error, in graphql-core too.)"""
    from graphql_api.compiled.run import Run

    def broken(*_: Any) -> None:
        raise RuntimeError("a bug")

    before = dict(outcomes)
    monkeypatch.setattr(Run, "_enqueue", broken)
    await same("{ box { label items { name later } } }")
    assert outcomes["rerun"] - before.get("rerun", 0) == 1
    assert "Compiled execution failed" in caplog.text


def test_plans_are_kept_per_operation_up_to_a_limit() -> None:
    cache = plan_cache(compiled._schema)
    cache.max_operations = 3
    try:
        for n in range(5):
            compiled.execute_sync(f"{{ box {{ items(first: {n}) {{ name }} }} }}")
        assert len(cache.operations) == 3
        assert all("first: " in key[0] for key in cache.operations)
    finally:
        cache.max_operations = 512


def test_strawberry_types_are_what_the_plan_expects() -> None:
    """The plan reads Strawberry's field definitions off the GraphQL schema."""
    definition = Leaf.__strawberry_definition__  # type: ignore[attr-defined]
    assert isinstance(definition, StrawberryObjectDefinition)
    graphql_field = compiled._schema.get_type("Leaf").fields["shout"]  # type: ignore[union-attr]
    assert graphql_field.extensions["strawberry-definition"].python_name == "shout"


async def test_a_graphql_core_result_comes_back_unchanged_when_no_plan() -> None:
    result = await compiled.execute("{ __typename }")
    assert result.data == {"__typename": "Query"}
    assert not isinstance(result, GraphQLExecutionResult) or result.errors is None
