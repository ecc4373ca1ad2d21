"""The outside tools some tests need: Node.js with npm, Chromium, PostgreSQL, PgBouncer. Without
one, its tests skip with a reason that names the tool and how to install it; under CI
(`CI=true`, which `.ci/run` sets) they fail instead, so CI never goes green by skipping what it
is there to run."""

from __future__ import annotations

import importlib.util
import os
import shutil

import pytest

from tests import pgbouncer

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def require(available: bool, tool: str, how: str) -> None:
    """Skip the calling test unless `tool` is `available` (fail it under CI)."""
    if available:
        return
    reason = f"needs {tool}: {how}"
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: CI must run this test, not skip it)", pytrace=False)
    pytest.skip(reason)


def npm_available() -> bool:
    return shutil.which("npm") is not None and shutil.which("node") is not None


def require_npm() -> None:
    require(npm_available(), "Node.js and npm", "apt-get install nodejs npm")


def require_chromium() -> None:
    """Debian's Chromium, driven by Playwright (a dev dependency; it never downloads a browser)."""
    require(os.path.exists(CHROMIUM), "Chromium", "apt-get install chromium")
    require(
        importlib.util.find_spec("playwright") is not None,
        "Playwright for Python",
        "`make test` installs it with the dev dependencies",
    )


def require_postgresql_server() -> None:
    """PostgreSQL's server programs, for tests that start a cluster of their own."""
    from tests import pgcluster  # it imports the live-server helpers, which import conftest

    require(
        pgcluster.available(), "PostgreSQL's server (initdb, pg_ctl)", "apt-get install postgresql"
    )


def require_pgbouncer() -> None:
    """PgBouncer, for the tests that run the API behind a transaction-mode pooler."""
    require(pgbouncer.available(), "PgBouncer", "apt-get install pgbouncer")


def require_test_database(url: str | None) -> None:
    require(
        url is not None,
        "PostgreSQL",
        "set TEST_DATABASE_URL to an empty database (README, Testing)",
    )
