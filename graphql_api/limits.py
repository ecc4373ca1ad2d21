"""Limits on what one operation may ask for: tokens, depth, aliases, directives, fields, cost.

Every walk over a document here is linear in the size of the document: a fragment is measured
once however often it is spread, and a fragment spread twice in one selection set counts once
(execution merges the two). A walk that followed every spread would take 2^n steps on
`fragment F0 { ...F1 ...F1 } fragment F1 { ...F2 ...F2 } ...`, a 1.6 KB document.

The shape of a document (depth, aliases, fields when fragments are expanded, the same field
selected many times in one selection set) is checked before graphql-core validates it: its
OverlappingFieldsCanBeMerged rule compares the fields of a selection set pairwise, so a
document must be refused for its shape before that rule sees it. Cost needs the variables
(`first: $n`), so it is checked as the operation is about to execute, before any resolver runs.

Every limit answers `QUERY_TOO_COMPLEX`, with `extensions.limit` naming the limit.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
    get_named_type,
    value_from_ast_untyped,
)
from graphql.language import DirectiveNode

from graphql_api.pagination import DEFAULT_PAGE_SIZE

ASSUMED_LIST_SIZE = 5
"""How many items a list without `first`/`last` (task.tags, task.subtasks) is assumed to hold."""

PASSWORD_FIELDS = frozenset({"signUp", "signIn", "changePassword", "deleteMe"})
"""Root fields that hash or verify a password: at most one per operation (argon2 is costly)."""


def too_complex(message: str, limit: str, **extensions: Any) -> GraphQLError:
    """The error of every limit: `QUERY_TOO_COMPLEX`, naming the limit that was exceeded."""
    return GraphQLError(
        message, extensions={"code": "QUERY_TOO_COMPLEX", "limit": limit, **extensions}
    )


@dataclass(frozen=True)
class ShapeLimits:
    """The limits checked on a document before it is validated."""

    max_depth: int
    max_aliases: int
    max_fields: int
    max_field_repeats: int


class _Measure(NamedTuple):
    height: int  # field levels below the selection set (0: leaves only)
    aliases: int
    fields: int  # fields, with fragments expanded


class _Measurer:
    """Measures selection sets, each fragment once (memoised by name)."""

    def __init__(self, fragments: dict[str, FragmentDefinitionNode]) -> None:
        self.fragments = fragments
        self.memo: dict[str, _Measure] = {}
        self.in_progress: set[str] = set()  # a cycle (refused by validation) counts as empty

    def selection_set(self, selection_set: SelectionSetNode) -> _Measure:
        height = aliases = fields = 0
        spread: set[str] = set()
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                fields += 1
                aliases += selection.alias is not None
                if selection.selection_set is None:
                    continue
                child = self.selection_set(selection.selection_set)
                aliases += child.aliases
                fields += child.fields
                # Introspection is as deep as the client's tool makes it: depth ignores it.
                if not selection.name.value.startswith("__"):
                    height = max(height, 1 + child.height)
                continue
            if isinstance(selection, InlineFragmentNode):
                child = self.selection_set(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                if selection.name.value in spread:
                    continue
                spread.add(selection.name.value)
                child = self.fragment(selection.name.value)
            else:  # pragma: no cover - graphql-core has no other selections
                continue
            height = max(height, child.height)
            aliases += child.aliases
            fields += child.fields
        return _Measure(height, aliases, fields)

    def fragment(self, name: str) -> _Measure:
        if name not in self.memo:
            definition = self.fragments.get(name)
            if definition is None or name in self.in_progress:
                return _Measure(0, 0, 0)
            self.in_progress.add(name)
            self.memo[name] = self.selection_set(definition.selection_set)
            self.in_progress.discard(name)
        return self.memo[name]


def _merged_fields(
    selection_sets: Iterable[SelectionSetNode], fragments: dict[str, FragmentDefinitionNode]
) -> dict[str, list[FieldNode]]:
    """The fields of selection sets that execution merges, by response key (as collect_fields
    does: each fragment once). Only called once the expanded size is known to be bounded."""
    fields: dict[str, list[FieldNode]] = {}
    spread: set[str] = set()

    def collect(selection_set: SelectionSetNode) -> None:
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                key = selection.alias.value if selection.alias else selection.name.value
                fields.setdefault(key, []).append(selection)
            elif isinstance(selection, InlineFragmentNode):
                collect(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in spread:
                spread.add(selection.name.value)
                if (fragment := fragments.get(selection.name.value)) is not None:
                    collect(fragment.selection_set)

    for selection_set in selection_sets:
        collect(selection_set)
    return fields


def _most_repeated(
    fields: dict[str, list[FieldNode]], fragments: dict[str, FragmentDefinitionNode]
) -> tuple[str, int]:
    """The response key selected most often in one merged selection set, at any level."""
    worst = max(((key, len(nodes)) for key, nodes in fields.items()), key=lambda kv: kv[1])
    for nodes in fields.values():
        children = [node.selection_set for node in nodes if node.selection_set is not None]
        if children:
            inner = _most_repeated(_merged_fields(children, fragments), fragments)
            worst = max(worst, inner, key=lambda kv: kv[1])
    return worst


@dataclass(frozen=True)
class OperationShape:
    """What the limits need to know of one operation, measured once per document."""

    depth: int
    aliases: int
    fields: int
    root_fields: frozenset[str]
    password_fields: int
    most_repeated: tuple[str, int]  # (response key, times) in one merged selection set

    def violations(self, limits: ShapeLimits) -> Iterator[GraphQLError]:
        if self.fields > limits.max_fields:
            yield too_complex(
                f"The operation selects {self.fields} fields once fragments are expanded, "
                f"more than the limit of {limits.max_fields}.",
                "fields",
            )
            return  # the other measures are not taken on a document this large
        if self.depth > limits.max_depth:
            yield too_complex(
                f"The operation's depth is {self.depth}, more than the limit of "
                f"{limits.max_depth}.",
                "depth",
            )
        if self.aliases > limits.max_aliases:
            yield too_complex(
                f"The operation uses {self.aliases} aliases, more than the limit of "
                f"{limits.max_aliases}.",
                "aliases",
            )
        key, times = self.most_repeated
        if times > limits.max_field_repeats:
            yield too_complex(
                f"`{key}` is selected {times} times in one selection set, more than the "
                f"limit of {limits.max_field_repeats}.",
                "fieldRepeats",
            )
        if self.password_fields > 1:
            yield too_complex(
                f"At most one of {', '.join(sorted(PASSWORD_FIELDS))} per operation: "
                "each checks a password, which is slow on purpose.",
                "passwordFields",
            )


def measure_operation(
    operation: OperationDefinitionNode,
    fragments: dict[str, FragmentDefinitionNode],
    max_fields: int,
) -> OperationShape:
    """The shape of `operation`. The merged walk runs only if the expanded size is bounded."""
    measure = _Measurer(fragments).selection_set(operation.selection_set)
    root: dict[str, list[FieldNode]] = {}
    most_repeated = ("", 0)
    if measure.fields <= max_fields:
        root = _merged_fields([operation.selection_set], fragments)
        if root:
            most_repeated = _most_repeated(root, fragments)
    return OperationShape(
        depth=measure.height,
        aliases=measure.aliases,
        fields=measure.fields,
        root_fields=frozenset(node.name.value for nodes in root.values() for node in nodes),
        password_fields=sum(
            any(node.name.value in PASSWORD_FIELDS for node in nodes) for nodes in root.values()
        ),
        most_repeated=most_repeated,
    )


def measure_document(document: DocumentNode, max_fields: int) -> dict[str | None, OperationShape]:
    """The shape of every operation of `document`, by operation name."""
    fragments = fragments_of(document)
    return {
        (definition.name.value if definition.name else None): measure_operation(
            definition, fragments, max_fields
        )
        for definition in document.definitions
        if isinstance(definition, OperationDefinitionNode)
    }


def directive_limit(max_directives: int) -> type[ValidationRule]:
    """A validation rule refusing documents with more than `max_directives` directives."""

    class MaxDirectives(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            self.count = 0

        def enter_directive(self, node: DirectiveNode, *_: Any) -> None:
            self.count += 1
            if self.count == max_directives + 1:
                error = too_complex(
                    f"The operation uses more than {max_directives} directives.", "directives"
                )
                error.nodes = [node]
                self.report_error(error)

    return MaxDirectives


def _is_list(graphql_type: Any) -> bool:
    if isinstance(graphql_type, GraphQLNonNull):
        graphql_type = graphql_type.of_type
    return isinstance(graphql_type, GraphQLList)


PAGE_TYPES = ("Connection", "ChangePage")
"""Types (by name suffix) whose lists are the page their field's `first` sized already."""


class _CostEstimator:
    """Fields an operation may resolve: each field counts 1, and a list multiplies what it
    holds by the page size it asks for (`first`/`last`; without it, the argument's default,
    or 20), or by ASSUMED_LIST_SIZE for an unpaginated list. The lists of a connection (edges,
    nodes) or of a `ChangePage` are the page itself and do not multiply again. Each fragment
    is estimated once."""

    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: dict[str, FragmentDefinitionNode],
        variables: dict[str, Any],
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = variables
        self.memo: dict[str, int] = {}
        self.in_progress: set[str] = set()

    def selection_cost(self, selections: SelectionSetNode, parent: Any) -> int:
        total = 0
        spread: set[str] = set()
        for selection in selections.selections:
            if isinstance(selection, FieldNode):
                total += self.field_cost(selection, parent)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                inner = self.schema.get_type(condition.name.value) if condition else parent
                total += self.selection_cost(selection.selection_set, inner)
            elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in spread:
                spread.add(selection.name.value)
                total += self.fragment_cost(selection.name.value)
        return total

    def fragment_cost(self, name: str) -> int:
        if name not in self.memo:
            fragment = self.fragments.get(name)
            if fragment is None or name in self.in_progress:
                return 0
            self.in_progress.add(name)
            inner = self.schema.get_type(fragment.type_condition.name.value)
            self.memo[name] = self.selection_cost(fragment.selection_set, inner)
            self.in_progress.discard(name)
        return self.memo[name]

    def field_cost(self, node: FieldNode, parent: Any) -> int:
        if node.selection_set is None:
            return 1
        fields = getattr(get_named_type(parent), "fields", {})
        field = fields.get(node.name.value)
        if field is None:  # __typename and introspection: leave to the other limits
            return 1
        children = self.selection_cost(node.selection_set, field.type)
        return 1 + self.multiplier(node, field, parent) * children

    def multiplier(self, node: FieldNode, field: Any, parent: Any) -> int:
        for argument in node.arguments or ():
            if argument.name.value in {"first", "last"}:
                value = value_from_ast_untyped(argument.value, self.variables)
                return value if isinstance(value, int) and value > 0 else 1
        if "first" in field.args:
            default = field.args["first"].default_value  # `changes` pages 100 by default
            return default if isinstance(default, int) and default > 0 else DEFAULT_PAGE_SIZE
        named_parent = get_named_type(parent)
        in_connection = isinstance(named_parent, GraphQLObjectType) and named_parent.name.endswith(
            PAGE_TYPES
        )
        return ASSUMED_LIST_SIZE if _is_list(field.type) and not in_connection else 1


def operation_cost(
    schema: GraphQLSchema,
    operation: OperationDefinitionNode,
    fragments: dict[str, FragmentDefinitionNode],
    variables: dict[str, Any],
) -> int:
    root = schema.get_root_type(operation.operation)
    return _CostEstimator(schema, fragments, variables).selection_cost(
        operation.selection_set, root
    )


def cost_error(cost: int, max_cost: int) -> GraphQLError:
    return too_complex(
        f"The operation may cost {cost}, more than the limit of {max_cost}: "
        "ask for smaller pages or fewer fields.",
        "cost",
        cost=cost,
    )


def selected_operation(
    document: DocumentNode, operation_name: str | None
) -> OperationDefinitionNode | None:
    """The operation of `document` that a request runs (by name, or the only one)."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is None:
        return operations[0] if len(operations) == 1 else None
    return next((o for o in operations if o.name and o.name.value == operation_name), None)


def fragments_of(document: DocumentNode) -> dict[str, FragmentDefinitionNode]:
    return {
        definition.name.value: definition
        for definition in document.definitions
        if isinstance(definition, FragmentDefinitionNode)
    }
