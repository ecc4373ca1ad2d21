"""The schema reference (docs/schema.md), generated from the live schema's descriptions."""

from __future__ import annotations

from graphql import (
    GraphQLArgument,
    GraphQLEnumType,
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
)

BUILT_IN = {"String", "Int", "Float", "Boolean", "ID"}


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split()).replace("|", "\\|")


def _arguments(arguments: dict[str, GraphQLArgument]) -> str:
    if not arguments:
        return ""
    return "(" + ", ".join(f"{name}: {arg.type}" for name, arg in arguments.items()) + ")"


def _fields_table(fields: dict[str, GraphQLField]) -> list[str]:
    lines = ["| field | type | description |", "| --- | --- | --- |"]
    for name, field in fields.items():
        signature = f"{name}{_arguments(field.args)}"
        lines.append(f"| `{signature}` | `{field.type}` | {_one_line(field.description)} |")
    return lines


def _section(named: GraphQLNamedType) -> list[str]:
    kinds = {
        GraphQLObjectType: "type",
        GraphQLInterfaceType: "interface",
        GraphQLInputObjectType: "input",
        GraphQLEnumType: "enum",
        GraphQLScalarType: "scalar",
    }
    kind = next(name for cls, name in kinds.items() if isinstance(named, cls))
    lines = [f"### {kind} `{named.name}`", "", _one_line(named.description), ""]
    if isinstance(named, GraphQLObjectType | GraphQLInterfaceType):
        lines += _fields_table(named.fields)
    elif isinstance(named, GraphQLInputObjectType):
        lines += ["| field | type | description |", "| --- | --- | --- |"]
        lines += [
            f"| `{name}` | `{field.type}` | {_one_line(field.description)} |"
            for name, field in named.fields.items()
        ]
    elif isinstance(named, GraphQLEnumType):
        lines += ["| value | description |", "| --- | --- |"]
        lines += [f"| `{name}` | {_one_line(v.description)} |" for name, v in named.values.items()]
    return [*lines, ""]


def schema_reference(schema: GraphQLSchema) -> str:
    """Markdown: the root operations first, then every type in alphabetical order."""
    roots = [schema.query_type, schema.mutation_type]
    lines = [
        "# Schema reference",
        "",
        "Generated from the schema's own descriptions by "
        "`graphql-api export-schema --reference docs/schema.md`; do not edit by hand.",
        "",
        "## Operations",
        "",
    ]
    for root in roots:
        if root is not None:
            lines += _section(root)
    lines += ["## Types", ""]
    for name in sorted(schema.type_map):
        named = schema.type_map[name]
        if name.startswith("__") or name in BUILT_IN or named in roots:
            continue
        lines += _section(named)
    return "\n".join(lines).rstrip() + "\n"
