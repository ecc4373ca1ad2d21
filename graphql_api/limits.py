"""Limits on what one operation may ask for: depth, aliases, tokens, directives and cost.

Depth, aliases and tokens use Strawberry's limiters. Directives are counted by a validation rule
of our own (Strawberry has none). Cost needs the variables (`first: $n`), so it is checked as
the operation is about to execute, before any resolver or SQL runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from graphql import (
    DocumentNode,
    ExecutionResult,
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
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    QueryDepthLimiter,
    SchemaExtension,
)

from graphql_api.pagination import DEFAULT_PAGE_SIZE

ASSUMED_LIST_SIZE = 5
"""How many items a list without `first`/`last` (task.tags, task.subtasks) is assumed to hold."""


def directive_limit(max_directives: int) -> type[ValidationRule]:
    """A validation rule refusing documents with more than `max_directives` directives."""

    class MaxDirectives(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            self.count = 0

        def enter_directive(self, node: DirectiveNode, *_: Any) -> None:
            self.count += 1
            if self.count == max_directives + 1:
                self.report_error(
                    GraphQLError(
                        f"The operation uses more than {max_directives} directives.",
                        node,
                        extensions={"code": "QUERY_TOO_COMPLEX"},
                    )
                )

    return MaxDirectives


def validation_limits(
    *, max_depth: int, max_aliases: int, max_directives: int
) -> Callable[[], SchemaExtension]:
    """One extension adding the depth, alias and directive rules to validation.

    The rule classes are made once: validation results are cached with the rules as part of
    the key, and Strawberry's limiters make a new rule class per instance, which would turn
    every request into a cache miss (measured: about a third of the CPU of a request).
    """
    rules = [
        *QueryDepthLimiter(max_depth=max_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=max_aliases).validation_rules,
        directive_limit(max_directives),
    ]
    return lambda: AddValidationRules(rules)


def _is_list(graphql_type: Any) -> bool:
    if isinstance(graphql_type, GraphQLNonNull):
        graphql_type = graphql_type.of_type
    return isinstance(graphql_type, GraphQLList)


class _CostEstimator:
    """Fields an operation may resolve: each field counts 1, and a list multiplies what it
    holds by the page size it asks for (`first`/`last`, 20 by default), or by
    ASSUMED_LIST_SIZE for an unpaginated list. The lists of a connection (edges, nodes) are
    the page itself and do not multiply again."""

    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: dict[str, FragmentDefinitionNode],
        variables: dict[str, Any],
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = variables

    def selection_cost(
        self, selections: SelectionSetNode, parent: Any, seen: frozenset[str]
    ) -> int:
        total = 0
        for selection in selections.selections:
            if isinstance(selection, FieldNode):
                total += self.field_cost(selection, parent, seen)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                inner = self.schema.get_type(condition.name.value) if condition else parent
                total += self.selection_cost(selection.selection_set, inner, seen)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self.fragments.get(name)
                if fragment is None or name in seen:
                    continue
                inner = self.schema.get_type(fragment.type_condition.name.value)
                total += self.selection_cost(fragment.selection_set, inner, seen | {name})
        return total

    def field_cost(self, node: FieldNode, parent: Any, seen: frozenset[str]) -> int:
        if node.selection_set is None:
            return 1
        fields = getattr(get_named_type(parent), "fields", {})
        field = fields.get(node.name.value)
        if field is None:  # __typename and introspection: leave to the other limits
            return 1
        children = self.selection_cost(node.selection_set, field.type, seen)
        return 1 + self.multiplier(node, field, parent) * children

    def multiplier(self, node: FieldNode, field: Any, parent: Any) -> int:
        for argument in node.arguments or ():
            if argument.name.value in {"first", "last"}:
                value = value_from_ast_untyped(argument.value, self.variables)
                return value if isinstance(value, int) and value > 0 else 1
        if "first" in field.args:
            return DEFAULT_PAGE_SIZE
        named_parent = get_named_type(parent)
        in_connection = isinstance(named_parent, GraphQLObjectType) and named_parent.name.endswith(
            "Connection"
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
        operation.selection_set, root, frozenset()
    )


def selected_operation(
    document: DocumentNode, operation_name: str | None
) -> OperationDefinitionNode | None:
    """The operation of `document` that a request runs (by name, or the only one)."""
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode) and (
            operation_name is None or (definition.name and definition.name.value == operation_name)
        ):
            return definition
    return None


def fragments_of(document: DocumentNode) -> dict[str, FragmentDefinitionNode]:
    return {
        definition.name.value: definition
        for definition in document.definitions
        if isinstance(definition, FragmentDefinitionNode)
    }


def cost_limit(max_cost: int) -> type[SchemaExtension]:
    class CostLimiter(SchemaExtension):
        """Refuse, before execution, an operation whose estimated cost exceeds the limit."""

        def on_execute(self) -> Iterator[None]:
            execution = self.execution_context
            document = execution.graphql_document
            operation = None
            if document is not None and execution.result is None:
                operation = selected_operation(document, execution.operation_name)
            if document is not None and operation is not None:
                schema = execution.schema._schema
                variables = execution.variables or {}
                cost = operation_cost(schema, operation, fragments_of(document), variables)
                if cost > max_cost:
                    execution.result = ExecutionResult(
                        data=None,
                        errors=[
                            GraphQLError(
                                f"The operation may cost {cost}, more than the limit of "
                                f"{max_cost}: ask for smaller pages or fewer fields.",
                                extensions={"code": "QUERY_TOO_COMPLEX", "cost": cost},
                            )
                        ],
                    )
            yield

    return CostLimiter
