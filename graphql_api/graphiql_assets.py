"""GraphiQL's scripts for machines without internet access: the npm packages, at the exact
versions the served page asks unpkg.com for, fetched into a folder laid out like unpkg.com
(`graphiql@3.8.3/graphiql.min.js`) that the server then serves (`GRAPHIQL_ASSETS_DIR`)."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from strawberry.http.ides import get_graphql_ide_html

from graphql_api.settings import Settings

GRAPHIQL_CDN = "https://unpkg.com"
GRAPHIQL_ASSETS_PATH = "/graphiql-assets"
"""Where the server serves GRAPHIQL_ASSETS_DIR; the page's CDN URLs are rewritten to it."""
COMMAND = "graphql-api graphiql-assets DIR"
INSTALL_NPM = "Debian/Ubuntu: apt-get install npm; elsewhere: Node.js from https://nodejs.org"
_ASSET_URL = re.compile(re.escape(GRAPHIQL_CDN) + r"/((?:@[\w.-]+/)?[\w.-]+)@([\w.-]+)/([^\"'\s]+)")


class AssetsError(Exception):
    """The packages could not be fetched; the message says why and what to do."""


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    files: tuple[str, ...]  # the paths inside the package that the page loads

    @property
    def folder(self) -> str:
        """Its folder under GRAPHIQL_ASSETS_DIR, named as in unpkg.com's URLs."""
        return f"{self.name}@{self.version}"


def graphiql_packages() -> list[Package]:
    """The packages that GraphiQL's page loads, at the versions the installed Strawberry pins."""
    files: dict[tuple[str, str], list[str]] = {}
    for name, version, path in _ASSET_URL.findall(get_graphql_ide_html(graphql_ide="graphiql")):
        files.setdefault((name, version), []).append(path)
    return [Package(name, version, tuple(paths)) for (name, version), paths in files.items()]


def missing_packages(directory: Path) -> list[Package]:
    """The packages of which `directory` lacks a file the page loads."""
    return [package for package in graphiql_packages() if not _present(directory, package)]


def _present(directory: Path, package: Package) -> bool:
    return all((directory / package.folder / path).is_file() for path in package.files)


def fetch_graphiql_assets(directory: Path) -> list[Package]:
    """Fetch with `npm pack` the packages `directory` lacks, one folder each; answer those."""
    wanted = missing_packages(directory)
    if not wanted:
        return []
    npm = shutil.which("npm")
    if npm is None:
        raise AssetsError(f"npm is needed to fetch GraphiQL's packages ({INSTALL_NPM}).")
    with tempfile.TemporaryDirectory(prefix="graphiql-assets-") as work:
        tarballs = _npm_pack(npm, [f"{p.name}@{p.version}" for p in wanted], Path(work))
        directory.mkdir(parents=True, exist_ok=True)
        for package in wanted:
            _unpack(Path(work) / tarballs[package.name], directory, package.folder)
    return wanted


def _npm_pack(npm: str, specs: list[str], destination: Path) -> dict[str, str]:
    """Download the packages' tarballs (no dependencies: the page loads bundles), by name."""
    run = subprocess.run(  # noqa: S603  (npm with exact versions taken from the page)
        [npm, "pack", "--json", "--loglevel=error", "--pack-destination", str(destination), *specs],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if run.returncode != 0:
        raise AssetsError(
            f"`npm pack {' '.join(specs)}` failed (exit {run.returncode}):\n"
            f"{run.stderr.strip()[-2000:]}\n"
            "npm needs its registry (or a mirror: npm_config_registry=URL); on a machine "
            "without internet access, run this command elsewhere and copy the folder."
        )
    return {entry["name"]: entry["filename"] for entry in json.loads(run.stdout)}


def _unpack(tarball: Path, directory: Path, folder: str) -> None:
    """Extract an npm tarball's files (its top folder stripped) into `directory/folder`,
    through a temporary folder so that an interrupted run leaves no half package."""
    partial = Path(tempfile.mkdtemp(prefix=f".{folder.replace('/', '+')}.", dir=directory))
    try:
        with tarfile.open(tarball) as archive:
            for member in archive.getmembers():
                relative = PurePosixPath(*PurePosixPath(member.name).parts[1:])
                if not member.isfile() or ".." in relative.parts or relative.is_absolute():
                    continue  # npm tarballs hold plain files; anything else is not needed
                target = partial / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                source = archive.extractfile(member)
                assert source is not None  # a regular file
                with source, target.open("wb") as out:
                    shutil.copyfileobj(source, out)
        final = directory / folder
        final.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(final, ignore_errors=True)
        partial.replace(final)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def log_where_graphiql_loads_from(settings: Settings) -> None:
    """One line at start: where GraphiQL's scripts come from, and the remedy when offline."""
    log = logging.getLogger(__name__)
    if not settings.graphiql_enabled:
        return
    if settings.graphiql_assets_dir is None:
        log.info(
            "GraphiQL on GET /graphql loads its scripts from %s; on a machine without internet "
            "access it stays blank: run `%s`, then set GRAPHIQL_ASSETS_DIR=DIR",
            GRAPHIQL_CDN,
            COMMAND,
        )
        return
    missing = missing_packages(Path(settings.graphiql_assets_dir))
    if missing:
        log.warning(
            "GRAPHIQL_ASSETS_DIR=%s lacks %s: GraphiQL will be blank; run `graphql-api "
            "graphiql-assets %s`",
            settings.graphiql_assets_dir,
            ", ".join(package.folder for package in missing),
            settings.graphiql_assets_dir,
        )
    else:
        log.info("GraphiQL on GET /graphql loads its scripts from %s", settings.graphiql_assets_dir)
