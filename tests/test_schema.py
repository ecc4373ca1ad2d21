"""The schema as clients see it: committed SDL in sync, descriptions everywhere, and every table
column either in its GraphQL type or excluded on purpose."""

from __future__ import annotations

from pathlib import Path

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    is_non_null_type,
)

from graphql_api.cli import PROJECT_ROOT
from graphql_api.conversations.mutations import (
    CreateConversationInput,
    PostMessageInput,
    UpdateConversationInput,
)
from graphql_api.conversations.types import Conversation, Message
from graphql_api.errors import camel_case
from graphql_api.schema import schema
from graphql_api.tags.mutations import CreateTagInput, UpdateTagInput
from graphql_api.tags.types import Tag
from graphql_api.tasks.mutations import CreateTaskInput, UpdateTaskInput
from graphql_api.tasks.types import Task
from graphql_api.users.mutations import UpdateMeInput
from graphql_api.users.types import User

BUILT_IN_SCALARS = {"String", "Int", "Float", "Boolean", "ID"}


def test_committed_schema_matches_the_code() -> None:
    committed = (PROJECT_ROOT / "schema.graphql").read_text()
    assert committed == schema.as_str() + "\n", (
        "schema.graphql is stale: run `graphql-api export-schema` and commit it"
    )


def test_committed_reference_matches_the_code() -> None:
    from graphql_api.reference import schema_reference

    committed = (PROJECT_ROOT / "docs" / "schema.md").read_text()
    assert committed == schema_reference(schema._schema), (
        "docs/schema.md is stale: run `graphql-api export-schema --reference docs/schema.md`"
    )


def test_export_schema_writes_the_sdl(tmp_path: Path) -> None:
    from graphql_api.cli import main

    target = tmp_path / "out.graphql"
    main(["export-schema", "--output", str(target)])
    assert target.read_text() == schema.as_str() + "\n"


def undescribed() -> list[str]:
    missing = []
    for name, named_type in schema._schema.type_map.items():
        if name.startswith("__") or name in BUILT_IN_SCALARS:
            continue
        if not named_type.description:
            missing.append(name)
        if isinstance(named_type, (GraphQLObjectType, GraphQLInterfaceType)):
            for field_name, field in named_type.fields.items():
                if not field.description:
                    missing.append(f"{name}.{field_name}")
                missing += [
                    f"{name}.{field_name}({arg_name})"
                    for arg_name, arg in field.args.items()
                    if not arg.description
                ]
        elif isinstance(named_type, GraphQLInputObjectType):
            missing += [
                f"{name}.{field_name}"
                for field_name, field in named_type.fields.items()
                if not field.description
            ]
        elif isinstance(named_type, GraphQLEnumType):
            missing += [
                f"{name}.{value_name}"
                for value_name, value in named_type.values.items()
                if not value.description
            ]
    return missing


def test_every_type_field_argument_and_enum_value_is_described() -> None:
    assert undescribed() == []


@pytest.mark.parametrize(
    "mirrored",
    [
        Task,
        Tag,
        Conversation,
        Message,
        User,
        CreateTaskInput,
        UpdateTaskInput,
        CreateTagInput,
        UpdateTagInput,
        CreateConversationInput,
        UpdateConversationInput,
        PostMessageInput,
        UpdateMeInput,
    ],
    ids=lambda cls: cls.__name__,
)
def test_every_column_is_in_the_graphql_type_or_excluded_on_purpose(mirrored: type) -> None:
    model = mirrored.__mirrored_model__  # type: ignore[attr-defined]
    excluded = mirrored.__excluded_columns__  # type: ignore[attr-defined]
    graphql_type = schema._schema.type_map[mirrored.__strawberry_definition__.name]  # type: ignore[attr-defined]
    exposed = set(graphql_type.fields)  # type: ignore[attr-defined]
    for column in model.model_fields:
        assert camel_case(column) in exposed or excluded.get(column), (
            f"{model.__name__}.{column} is neither in {graphql_type} nor excluded with a reason"
        )
    assert all(reason.strip() for reason in excluded.values())


def test_every_mutation_result_is_nullable() -> None:
    """A mutation that fails answers null and its error, and nulls nothing else: with a
    non-null result, one failing mutation of a request would null the whole `data`, hiding
    what the mutations before it saved (GraphQL's and Apollo's guidance: nullable results)."""
    mutation = schema._schema.mutation_type
    assert mutation is not None
    non_null = [name for name, field in mutation.fields.items() if is_non_null_type(field.type)]
    assert non_null == [], f"make these mutations' results nullable: {non_null}"


def test_the_password_hash_never_reaches_the_schema() -> None:
    sdl = schema.as_str()
    assert "password_hash" not in sdl
    assert "passwordHash" not in sdl


def test_the_readme_documents_every_setting() -> None:
    from graphql_api.settings import Settings

    readme = (PROJECT_ROOT / "README.md").read_text()
    missing = [name.upper() for name in Settings.model_fields if f"`{name.upper()}`" not in readme]
    assert missing == []
