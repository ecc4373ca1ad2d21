"""The API as client teams meet it: operations a front-end writes validate against the schema;
examples/typescript, on the exact tools its lockfile pins, generates typed documents with GraphQL
Code Generator's client preset from the live server's introspection (and the same from
schema.graphql), tsc proves every operation is typed by its own document, and the typed client
runs against the server; a Python `gql` client with schema validation works end to end too."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from graphql import OperationDefinitionNode, build_schema, parse, validate

from graphql_api.cli import PROJECT_ROOT, schema_changes
from tests import live
from tests.tools import require_npm

EXAMPLES = PROJECT_ROOT / "examples"
TYPESCRIPT = EXAMPLES / "typescript"
# The example's own sources; ./gql/ (generated) and node_modules/ are git-ignored and not copied.
TYPESCRIPT_SOURCES = [
    "package.json",
    "package-lock.json",
    "codegen.ts",
    "tsconfig.json",
    "client.ts",
    "main.ts",
]
# Type-level checks, compiled with the example: each `@ts-expect-error` line must fail to compile,
# so tsc proves that every result type is its own document's selection, not the schema's type.
SHAPE_CHECKS = """
import type { ResultOf, VariablesOf } from "@graphql-typed-document-node/core";
import type { CreateTaskId, OpenTaskTitles } from "./client";
import type { TaskDetailDocument } from "./gql/graphql";

type Created = NonNullable<ResultOf<typeof CreateTaskId>["createTask"]>;
export const id: string = ({} as Created).id;
// @ts-expect-error CreateTaskId selects only the id of the task it creates
export const title = ({} as Created).title;

type OpenTask = ResultOf<typeof OpenTaskTitles>["tasks"]["nodes"][number];
export const openTitle: string = ({} as OpenTask).title;
// @ts-expect-error OpenTaskTitles selects only titles
export const priority = ({} as OpenTask).priority;
// @ts-expect-error OpenTaskTitles declares no $filter
export const variables: VariablesOf<typeof OpenTaskTitles> = { first: 1, filter: {} };

type Detail = NonNullable<ResultOf<typeof TaskDetailDocument>["task"]>;
export const parents: string[] = ({} as Detail).parents.map((parent) => parent.title);
// @ts-expect-error the fields of ...TaskFields are masked: getFragmentData reads them
export const masked = ({} as Detail).title;
"""


def example_documents() -> str:
    return "\n".join(
        path.read_text() for path in sorted((EXAMPLES / "operations").glob("*.graphql"))
    )


def operation_names(document: str) -> set[str]:
    return {
        definition.name.value
        for definition in parse(document).definitions
        if isinstance(definition, OperationDefinitionNode) and definition.name
    }


def test_every_example_operation_validates_against_the_committed_schema() -> None:
    schema = build_schema((PROJECT_ROOT / "schema.graphql").read_text())
    document = parse(example_documents())
    assert validate(schema, document) == []
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
        "Changes",
    } <= operation_names(example_documents())


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


def run(command: list[str], cwd: Path, timeout: float = 300, **env: str) -> str:
    """Runs a Node tool; on failure the test fails with the tool's whole output."""
    result = subprocess.run(
        command,
        cwd=cwd,
        env={**os.environ, "NO_COLOR": "1", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(
            f"`{' '.join(command)}` failed (exit {result.returncode}) in {cwd}:\n"
            f"{result.stdout}\n{result.stderr}",
            pytrace=False,
        )
    return result.stdout


@pytest.fixture(scope="module")
def typescript_tools() -> Path:
    """`npm ci` of examples/typescript's lockfile into tests/.work (reused while it is unchanged)."""
    require_npm()  # GraphQL Code Generator and tsc run on Node.js
    folder = live.NODE_WORK / "typescript-client"
    manifests = [(TYPESCRIPT / name).read_bytes() for name in ("package.json", "package-lock.json")]
    wanted = hashlib.sha256(b"\0".join(manifests)).hexdigest()
    marker = folder / ".installed"
    if not marker.exists() or marker.read_text() != wanted:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(TYPESCRIPT / name, folder / name)
        run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"], folder, timeout=900)
        marker.write_text(wanted)
    return folder / "node_modules"


@pytest.fixture(scope="module")
def typescript_project(
    tmp_path_factory: pytest.TempPathFactory, typescript_tools: Path, server: str
) -> Path:
    """The example in the repository's layout (../operations, ../../schema.graphql) on the
    pinned tools, with ./gql/ generated from the live server's introspection."""
    project = lay_out_typescript_example(tmp_path_factory.mktemp("typescript"), typescript_tools)
    run([tool(project, "graphql-codegen")], project, GRAPHQL_SCHEMA=f"{server}/graphql")
    return project


def lay_out_typescript_example(root: Path, typescript_tools: Path) -> Path:
    """examples/typescript copied under `root` in the repository's layout (../operations,
    ../../schema.graphql), on the pinned tools; the project's folder."""
    project = root / "examples" / "typescript"
    project.mkdir(parents=True)
    for name in TYPESCRIPT_SOURCES:
        shutil.copy(TYPESCRIPT / name, project / name)
    shutil.copytree(EXAMPLES / "operations", root / "examples" / "operations")
    shutil.copy(PROJECT_ROOT / "schema.graphql", root / "schema.graphql")
    (project / "node_modules").symlink_to(typescript_tools, target_is_directory=True)
    return project


def tool(project: Path, name: str) -> str:
    return str(project / "node_modules" / ".bin" / name)


def generated(project: Path) -> dict[str, str]:
    return {path.name: path.read_text() for path in sorted((project / "gql").iterdir())}


def test_the_typescript_example_pins_its_tools_exactly() -> None:
    package = json.loads((TYPESCRIPT / "package.json").read_text())
    lock = json.loads((TYPESCRIPT / "package-lock.json").read_text())
    wanted = {**package["dependencies"], **package["devDependencies"]}
    assert {"@graphql-codegen/cli", "@graphql-codegen/client-preset", "typescript"} <= set(wanted)
    assert lock["packages"][""]["dependencies"] == package["dependencies"]
    assert lock["packages"][""]["devDependencies"] == package["devDependencies"]
    for name, version in wanted.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name} is not pinned exactly: {version}"
        assert lock["packages"][f"node_modules/{name}"]["version"] == version


def test_codegen_types_the_same_from_live_introspection_and_from_schema_graphql(
    typescript_project: Path,
) -> None:
    from_server = generated(typescript_project)
    assert set(from_server) == {
        "fragment-masking.ts",
        "gql.ts",
        "graphql.ts",
        "index.ts",
        "persisted-documents.json",
    }
    types = from_server["graphql.ts"]
    assert re.search(r"export type CreateTaskIdMutation = \{ createTask: \{ id: string \}", types)
    assert "export type TaskListQuery = " in types
    run([tool(typescript_project, "graphql-codegen")], typescript_project)  # codegen.ts's default
    assert generated(typescript_project) == from_server, (
        "codegen from schema.graphql differs from the live server's introspection"
    )


def test_tsc_proves_each_operation_is_typed_by_its_own_document(typescript_project: Path) -> None:
    checks = typescript_project / "shape-checks.ts"
    checks.write_text(SHAPE_CHECKS)
    try:
        run([tool(typescript_project, "tsc"), "-p", "."], typescript_project)
    finally:
        checks.unlink()


def test_the_persisted_documents_manifest_holds_every_operation_under_its_sha256(
    typescript_project: Path,
) -> None:
    manifest = (typescript_project / "gql" / "persisted-documents.json").read_text()
    names: set[str] = set()
    for key, text in json.loads(manifest).items():
        assert key == "sha256:" + hashlib.sha256(text.encode()).hexdigest()
        names |= operation_names(text)
    client = {"SignUpForToken", "SignInForToken", "CreateTaskId", "OpenTaskTitles"}
    assert names == operation_names(example_documents()) | client


def test_the_typescript_client_runs_against_the_live_server(
    server: str, typescript_project: Path
) -> None:
    command = [
        tool(typescript_project, "jiti"),
        "main.ts",
        f"{server}/graphql",
        "typescript-client@example.com",
        "password123",
    ]
    first = run(command, typescript_project, timeout=120)
    assert "created 'Try the TypeScript client' (HIGH, due 20" in first
    assert "1 open tasks: Try the TypeScript client" in first
    again = run(command, typescript_project, timeout=120)  # signs in to the account it made
    assert "2 open tasks: Try the TypeScript client, Try the TypeScript client" in again


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
    # The second task of the same request was refused alone: the first one was saved.
    assert "refused: `title`: String should have at least 1 character." in first.stdout
    assert "1 open tasks: Try the Python client" in first.stdout
    again = run_python_client(server)  # signs in to the account the first run made
    assert "2 open tasks" in again.stdout, again.stderr
