"""GraphiQL in a real browser (Debian's headless Chromium driven by Playwright): a token in the
Headers pane lists the user's tasks; without it the answer is UNAUTHENTICATED. The screenshot
in docs/ comes from this test.

GraphiQL's scripts normally come from unpkg.com; the browser here is kept offline (only the API's
server answers it), so the server serves them itself, fetched by `graphql-api graphiql-assets
DIR` (GRAPHIQL_ASSETS_DIR=DIR).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from graphql_api.cli import PROJECT_ROOT
from tests import live, ws
from tests.conftest import TEST_DATABASE_URL, throwaway_postgresql_database
from tests.tools import CHROMIUM, CHROMIUM_ARGS, require_chromium, require_npm

if TYPE_CHECKING:
    from playwright.sync_api import Page

# The README's picture; refreshed when UPDATE_SCREENSHOT=1 (by default it goes to a tmp path).
SCREENSHOT = PROJECT_ROOT / "docs" / "graphiql.png"
QUERY = "{\n  tasks(first: 5) {\n    totalCount\n    nodes { title priority dueDate }\n  }\n}"
ASSETS = live.NODE_WORK / "graphiql-assets"  # kept between runs: the command fetches what lacks


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require_chromium()
    require_npm()
    fetched = live.graphiql_assets(ASSETS)
    assert fetched.returncode == 0, fetched.stderr
    folder = tmp_path_factory.mktemp("graphiql")
    with live.running_server(
        f"sqlite:///{folder / 'graphiql.db'}",
        folder / "server.log",
        GRAPHIQL_ASSETS_DIR=str(ASSETS),
    ) as base:
        yield base


@contextmanager
def graphiql_running(base: str, document: str, headers: str | None) -> Iterator[Page]:
    """GraphiQL open in Chromium on `base`'s /graphql, with `document` (and `headers`) typed in
    and run; yields the page, closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 720})
        # As on a machine without internet access: only this server answers the browser.
        page.route(
            "**/*",
            lambda route: (
                route.continue_() if route.request.url.startswith(base) else route.abort()
            ),
        )
        page.goto(f"{base}/graphql")
        query_editor = page.locator(".graphiql-query-editor .CodeMirror").first
        query_editor.wait_for(timeout=20_000)
        query_editor.click()
        page.keyboard.press("Control+A")
        page.keyboard.insert_text(document)
        if headers is not None:
            page.get_by_role("button", name="Headers").click()
            page.locator(".graphiql-editor-tool .CodeMirror").last.click()
            page.keyboard.press("Control+A")
            page.keyboard.insert_text(headers)
        page.locator(".graphiql-execute-button").click()
        try:
            yield page
        finally:
            browser.close()


def run_in_graphiql(base: str, headers: str | None, screenshot: Path | None = None) -> str:
    """Open GraphiQL, type the query (and headers), run it, and return the result pane's text."""
    with graphiql_running(base, QUERY, headers) as page:
        page.wait_for_function(
            "() => document.querySelector('.graphiql-response')?.innerText.includes('\"')",
            timeout=20_000,
        )
        text = page.locator(".graphiql-response .CodeMirror").inner_text()
        if screenshot is not None:
            page.screenshot(path=str(screenshot))
        return text


def test_graphiql_lists_the_users_tasks_with_a_bearer_token(server: str, tmp_path: Path) -> None:
    token = live.sign_up(server, "graphiql@example.com")
    for title in ("Write the report", "Call the bank"):
        httpx.post(
            f"{server}/graphql",
            json={
                "query": "mutation($t: String!) { createTask(input: {title: $t, priority: HIGH}) { id } }",
                "variables": {"t": title},
            },
            headers={"Authorization": f"Bearer {token}"},
        ).raise_for_status()
    screenshot = SCREENSHOT if os.environ.get("UPDATE_SCREENSHOT") else tmp_path / "graphiql.png"
    text = run_in_graphiql(server, f'{{"Authorization": "Bearer {token}"}}', screenshot=screenshot)
    assert screenshot.stat().st_size > 10_000
    assert "Write the report" in text
    assert "Call the bank" in text
    assert '"totalCount": 2' in text


def test_graphiql_without_a_token_shows_unauthenticated(server: str) -> None:
    text = run_in_graphiql(server, headers=None)
    assert "UNAUTHENTICATED" in text


# --- a subscription ---------------------------------------------------------------------------

SUBSCRIPTION_SCREENSHOT = PROJECT_ROOT / "docs" / "graphiql-subscription.png"
SUBSCRIPTION = "subscription {\n  changes {\n    kind\n    node { ... on Task { title } }\n  }\n}"


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """On PostgreSQL when the suite has one (writes reach subscribers through NOTIFY), else
    on a SQLite file (through the process itself)."""
    require_chromium()
    require_npm()
    fetched = live.graphiql_assets(ASSETS)
    assert fetched.returncode == 0, fetched.stderr
    folder = tmp_path_factory.mktemp("graphiql-live")
    with ExitStack() as stack:
        url = (
            stack.enter_context(throwaway_postgresql_database("h_graphiql"))
            if TEST_DATABASE_URL
            else f"sqlite:///{folder / 'graphiql.db'}"
        )
        yield stack.enter_context(
            live.running_server(url, folder / "server.log", GRAPHIQL_ASSETS_DIR=str(ASSETS))
        )


def test_graphiql_shows_a_change_live_after_a_mutation_from_another_client(
    live_server: str, tmp_path: Path
) -> None:
    """GraphiQL runs subscriptions over graphql-transport-ws, with the Headers pane as
    `connection_init`'s payload; the change appears once another client's mutation commits."""
    base = live_server
    token = live.sign_up(base, "graphiql-live@example.com")
    headers = f'{{"Authorization": "Bearer {token}"}}'
    with graphiql_running(base, SUBSCRIPTION, headers) as page:
        ws.wait_for_subscriptions(base, 1)  # the subscription is listening
        httpx.post(  # another client
            f"{base}/graphql",
            json={
                "query": 'mutation { createTask(input: {title: "Seen live in GraphiQL"}) { id } }'
            },
            headers={"Authorization": f"Bearer {token}"},
        ).raise_for_status()
        page.wait_for_function(
            "() => document.querySelector('.graphiql-response')?.innerText"
            ".includes('Seen live in GraphiQL')",
            timeout=30_000,
        )
        text = page.locator(".graphiql-response .CodeMirror").inner_text()
        screenshot = (
            SUBSCRIPTION_SCREENSHOT if os.environ.get("UPDATE_SCREENSHOT") else tmp_path / "s.png"
        )
        page.screenshot(path=str(screenshot))
    assert '"kind": "CREATED"' in text
    assert '"title": "Seen live in GraphiQL"' in text
