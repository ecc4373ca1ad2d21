"""The API as client teams meet it: operations a front-end writes validate against the schema,
GraphQL Code Generator types them from the live server's introspection and they compile, and a
Python `gql` client with schema validation works end to end."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from graphql import build_schema, parse, validate

from graphql_api.cli import PROJECT_ROOT, schema_changes
from tests import live

EXAMPLES = PROJECT_ROOT / "examples"
CODEGEN_PACKAGES = [
    "@graphql-codegen/cli@5",
    "@graphql-codegen/typescript@4",
    "@graphql-codegen/typescript-operations@4",
    "typescript@5",
    "graphql@16",
]


def example_documents() -> str:
    return "\n".join(
        path.read_text() for path in sorted((EXAMPLES / "operations").glob("*.graphql"))
    )


def test_every_example_operation_validates_against_the_committed_schema() -> None:
    schema = build_schema((PROJECT_ROOT / "schema.graphql").read_text())
    document = parse(example_documents())
    assert validate(schema, document) == []
    names = [d.name.value for d in document.definitions if getattr(d, "operation", None)]
    assert {
        "TaskList",
        "TaskDetail",
        "CreateTask",
        "UpdateTask",
        "CompleteTasks",
        "DeleteTask",
        "CreateTag",
        "SetTaskTags",
        "ConversationMessages",
        "PostMessage",
    } <= set(names)


def test_schema_diff_reports_breaking_changes() -> None:
    old = "type Query { a: Int b(x: Int): String }"
    new = 'type Query { b(x: Int!): String c: Int @deprecated(reason: "use b") }'
    breaking, _ = schema_changes(old, new)
    assert any("a was removed" in change for change in breaking)
    assert any("x" in change for change in breaking)
    assert schema_changes(old, old) == ([], [])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("clients")
    with live.running_server(f"sqlite:///{folder / 'clients.db'}", folder / "server.log") as base:
        yield base


def test_codegen_types_the_examples_from_live_introspection_and_they_compile(
    server: str, tmp_path: Path
) -> None:
    if not live.npm_available():
        pytest.skip("Node.js and npm are needed for GraphQL Code Generator")
    node = live.npm_install("codegen", CODEGEN_PACKAGES)
    (tmp_path / "codegen.yml").write_text(
        f"""
schema: "{server}/graphql"
documents: "{EXAMPLES / "operations"}/*.graphql"
generates:
  {tmp_path / "generated" / "graphql.ts"}:
    plugins: [typescript, typescript-operations]
    config:
      enumsAsTypes: true
      avoidOptionals: false
      scalars:
        DateTime: string
        ID: string
"""
    )
    subprocess.run(
        [
            str(node / "node_modules" / ".bin" / "graphql-codegen"),
            "--config",
            str(tmp_path / "codegen.yml"),
        ],
        cwd=node,
        check=True,
        capture_output=True,
        timeout=300,
    )
    generated = (tmp_path / "generated" / "graphql.ts").read_text()
    assert "export type TaskListQuery" in generated
    assert "DateTime: { input: string; output: string; }" in generated
    (tmp_path / "client.ts").write_text((EXAMPLES / "typescript" / "client.ts").read_text())
    compiled = subprocess.run(
        [
            str(node / "node_modules" / ".bin" / "tsc"),
            "--noEmit",
            "--strict",
            "--target",
            "es2022",
            "--lib",
            "es2022,dom",
            "--module",
            "es2022",
            "--moduleResolution",
            "bundler",
            str(tmp_path / "client.ts"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr


def run_python_client(server: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "python_client.py"),
            f"{server}/graphql",
            "python-client@example.com",
            "password123",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_python_client_example_runs_against_the_live_server(server: str) -> None:
    first = run_python_client(server)
    assert first.returncode == 0, first.stderr
    assert "created 'Try the Python client' (HIGH" in first.stdout
    assert "1 open tasks: Try the Python client" in first.stdout
    again = run_python_client(server)  # signs in to the account the first run made
    assert "2 open tasks" in again.stdout, again.stderr
