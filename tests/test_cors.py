"""A browser app on its own origin: preflights answered, the request id readable by scripts,
and origins not allowed refused. The last two tests drive a real browser: pages served by a
second local server call the API with `fetch`."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from graphql_api.settings import Settings
from tests import live
from tests.conftest import Backend, make_settings
from tests.helpers import serve
from tests.tools import CHROMIUM, CHROMIUM_ARGS, require_chromium

PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type, idempotency-key, x-request-id",
}


async def _preflight(settings: Settings, origin: str) -> dict[str, str]:
    async with serve(settings) as api:
        response = await api.client.options("/graphql", headers={"Origin": origin, **PREFLIGHT})
        assert response.status_code in (200, 400), response.text
        return dict(response.headers) if response.status_code == 200 else {}


async def test_local_origins_are_allowed_in_development(backend: Backend) -> None:
    headers = await _preflight(make_settings(backend.app_url), "http://127.0.0.1:3000")
    assert headers["access-control-allow-origin"] == "http://127.0.0.1:3000"
    allowed = headers["access-control-allow-headers"].lower()
    for header in ("authorization", "content-type", "idempotency-key", "x-request-id"):
        assert header in allowed
    assert int(headers["access-control-max-age"]) > 0
    assert await _preflight(make_settings(backend.app_url), "https://evil.example") == {}


async def test_production_allows_no_origin_unless_listed(backend: Backend) -> None:
    production = make_settings(backend.app_url, environment="production")
    assert await _preflight(production, "http://localhost:3000") == {}
    listed = make_settings(
        backend.app_url, environment="production", cors_allow_origins="https://app.example.com"
    )
    headers = await _preflight(listed, "https://app.example.com")
    assert headers["access-control-allow-origin"] == "https://app.example.com"


async def test_answers_expose_the_request_id_to_scripts(backend: Backend) -> None:
    async with serve(make_settings(backend.app_url)) as api:
        response = await api.client.post(
            "/graphql",
            json={"query": "{ __typename }"},
            headers={"Origin": "http://localhost:5173"},
        )
    assert response.headers["access-control-allow-origin"] == "http://localhost:5173"
    assert "x-request-id" in response.headers["access-control-expose-headers"].lower()


def test_the_origins_setting_reads_a_comma_separated_list() -> None:
    settings = Settings(_env_file=None, cors_allow_origins="https://a.example, https://b.example")  # type: ignore[call-arg]
    assert settings.cors_allow_origins == ["https://a.example", "https://b.example"]
    assert settings.cors_origin_regex is None


# --- in a real browser -----------------------------------------------------------------------

APP_PAGE = """<!doctype html><meta charset="utf-8"><title>todo app</title><pre id="out">…</pre>
<script>
async function call(query, variables, token) {
  const headers = {"Content-Type": "application/json"};
  if (token) headers["Authorization"] = "Bearer " + token;
  const response = await fetch(API + "/graphql", {
    method: "POST", headers, body: JSON.stringify({query, variables})});
  return [await response.json(), response.headers.get("X-Request-ID")];
}
(async () => {
  try {
    const email = "browser-" + Math.random().toString(16).slice(2) + "@example.com";
    const [signedUp] = await call(
      "mutation($e: String!) { signUp(input: {email: $e, password: \\"password123\\"}) { token } }",
      {e: email});
    const token = signedUp.data.signUp.token;
    await call('mutation { createTask(input: {title: "From the browser"}) { id } }', {}, token);
    const [listed, requestId] = await call("{ tasks { nodes { title } } }", {}, token);
    document.getElementById("out").textContent =
      "tasks: " + listed.data.tasks.nodes.map(t => t.title).join(",") + " id: " + requestId;
  } catch (error) {
    document.getElementById("out").textContent = "failed: " + error;
  }
})();
</script>"""


@contextmanager
def _page_server(folder: Path) -> Iterator[str]:
    """A second local server, on an origin of its own, serving the pages of `folder`."""
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def _page_text(url: str) -> str:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(url)
        page.wait_for_function(
            "() => !document.getElementById('out').textContent.startsWith('…')", timeout=20_000
        )
        text = page.locator("#out").inner_text()
        browser.close()
        return text


def test_a_browser_app_on_an_allowed_origin_works_and_another_cannot(tmp_path: Path) -> None:
    require_chromium()
    with _page_server(tmp_path / "pages") as allowed, _page_server(tmp_path / "other") as other:
        database = f"sqlite:///{tmp_path / 'api.db'}"
        with live.running_server(
            database, tmp_path / "server.log", CORS_ALLOW_ORIGINS=allowed
        ) as api:
            for folder in (tmp_path / "pages", tmp_path / "other"):
                (folder / "index.html").write_text(APP_PAGE.replace("API + ", f'"{api}" + '))
            works = _page_text(f"{allowed}/index.html")
            refused = _page_text(f"{other}/index.html")
    assert works.startswith("tasks: From the browser id: "), works
    assert len(works.rsplit(" ", 1)[1]) >= 16  # the request id, readable by the script
    assert refused.startswith("failed: TypeError: Failed to fetch"), refused
