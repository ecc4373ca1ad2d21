"""`graphql-api graphiql-assets DIR`, run as an operator runs it: it fetches from npm the
packages GraphiQL's page loads, at the versions it names, and with GRAPHIQL_ASSETS_DIR=DIR the
server serves every one of them itself, so the page needs no internet access. Without npm it
says what to install; and the server's start-up log points to the command."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from graphql_api.graphiql_assets import graphiql_packages
from tests import live

HTML = {"Accept": "text/html"}


def test_the_command_fetches_what_the_page_loads_and_the_server_serves_it(
    tmp_path: Path, needs_npm: None
) -> None:
    assets = tmp_path / "assets"

    fetched = live.graphiql_assets(assets)

    assert fetched.returncode == 0, fetched.stderr
    assert f"GRAPHIQL_ASSETS_DIR={assets}" in fetched.stdout
    database = f"sqlite:///{tmp_path / 'api.db'}"
    with live.running_server(
        database, tmp_path / "server.log", GRAPHIQL_ASSETS_DIR=str(assets)
    ) as base:
        page = httpx.get(f"{base}/graphql", headers=HTML).text
        scripts = re.findall(r'(?:src|href)="(/graphiql-assets/[^"]+)"', page)
        assert "unpkg.com" not in page
        assert len(scripts) == sum(len(package.files) for package in graphiql_packages())
        for path in scripts:
            served = httpx.get(f"{base}{path}")
            assert served.status_code == 200, path
            assert served.content == (assets / path.removeprefix("/graphiql-assets/")).read_bytes()


def test_the_command_run_again_keeps_what_it_has(tmp_path: Path, needs_npm: None) -> None:
    assert live.graphiql_assets(tmp_path).returncode == 0

    again = live.graphiql_assets(tmp_path, npm_config_registry="http://127.0.0.1:9/")

    assert again.returncode == 0, again.stderr  # npm was not asked: its registry is unreachable
    assert "has GraphiQL's packages already" in again.stdout


def test_without_npm_the_command_says_what_to_install(tmp_path: Path) -> None:
    run = live.graphiql_assets(tmp_path / "assets", PATH=str(tmp_path))  # no npm on this PATH

    assert run.returncode == 1
    assert "npm is needed" in run.stderr
    assert "apt-get install npm" in run.stderr
    assert not (tmp_path / "assets").exists()


def test_an_unreachable_registry_is_reported_with_npms_reason(
    tmp_path: Path, needs_npm: None
) -> None:
    run = live.graphiql_assets(
        tmp_path / "assets",
        npm_config_registry="http://127.0.0.1:9/",
        npm_config_fetch_retries="0",
        npm_config_cache=str(tmp_path / "npm-cache"),  # nothing cached: npm must ask the registry
    )

    assert run.returncode == 1
    assert "ECONNREFUSED" in run.stderr
    assert "run this command elsewhere and copy the folder" in run.stderr
    assert not (tmp_path / "assets").exists()


def test_serve_logs_where_graphiql_loads_its_scripts_from(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with live.running_server(f"sqlite:///{tmp_path / 'api.db'}", log, LOG_LEVEL="INFO"):
        pass
    assert "loads its scripts from https://unpkg.com" in log.read_text()
    assert "graphql-api graphiql-assets DIR" in log.read_text()


def test_serve_warns_when_the_assets_folder_lacks_the_scripts(tmp_path: Path) -> None:
    empty = tmp_path / "assets"
    empty.mkdir()
    log = tmp_path / "server.log"
    with live.running_server(
        f"sqlite:///{tmp_path / 'api.db'}", log, GRAPHIQL_ASSETS_DIR=str(empty)
    ):
        pass
    every = ", ".join(package.folder for package in graphiql_packages())
    assert f"GRAPHIQL_ASSETS_DIR={empty} lacks {every}: GraphiQL will be blank" in log.read_text()
    assert f"run `graphql-api graphiql-assets {empty}`" in log.read_text()
