"""Trusted documents: a request names its document by SHA-256 instead of sending its text.

A request names one with Apollo's `extensions.persistedQuery = {version: 1, sha256Hash}` or
with GraphQL over HTTP's `documentId: "sha256:<hex>"` (POST body or GET query string). The id is
looked up in, in order:

- the manifest (PERSISTED_DOCUMENTS), loaded once at start: GraphQL Code Generator's client
  preset writes one (`{"sha256:<hex>": text}`); Apollo's persisted query manifest is read too.
  Every id is checked against its text while loading.
- Apollo's automatic persisted queries (APQ): an unknown hash alone answers
  PERSISTED_QUERY_NOT_FOUND ("PersistedQueryNotFound"), and the client sends it again with its
  text; once the text's SHA-256 is checked, it is registered in the `persisted_documents` table,
  shared by every worker and replica. A small in-process cache sits in front of the table, so
  a known hash costs no SQL after the first time in each process.

With PERSISTED_DOCUMENTS_ONLY only the manifest counts: any other document (by text, or by a
hash the manifest lacks) is refused with PERSISTED_QUERY_NOT_ALLOWED, and nothing is registered.
Introspection follows INTROSPECTION: documents that select only `__schema`, `__type` and
`__typename` at their root still run when it is on, so GraphiQL's explorer and code generators
keep working. Everything here runs before Strawberry parses anything, and only for requests
that name a document (or in allow-list mode): an ordinary request does no extra work.

A document runs as its text: the request guard's parse and validation caches are keyed by it,
so a persisted document is parsed and validated once per process (up to CACHEABLE_QUERY_CHARS).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from cross_web import HTTPException
from graphql import FieldNode, GraphQLError, OperationDefinitionNode, parse
from sqlalchemy.dialects import postgresql, sqlite

from graphql_api.db import Database
from graphql_api.guard import CACHEABLE_QUERY_CHARS, BoundedCache
from graphql_api.models import PERSISTED_DOCUMENTS, utcnow
from graphql_api.settings import Settings

log = logging.getLogger(__name__)

DOCUMENTS = PERSISTED_DOCUMENTS
NOT_FOUND = "PERSISTED_QUERY_NOT_FOUND"
NOT_ALLOWED = "PERSISTED_QUERY_NOT_ALLOWED"
DOCUMENT_ID_PREFIX = "sha256:"
APQ_VERSION = 1
APOLLO_MANIFEST_FORMAT = "apollo-persisted-query-manifest"

CACHE_SIZE = 512
"""Registered documents kept in each process, most recently used first."""

MAX_REGISTERED_CHARS = CACHEABLE_QUERY_CHARS
"""Longer documents run, but are not registered: the store and the caches hold at most
AUTOMATIC_PERSISTED_QUERIES_MAX (or CACHE_SIZE) documents of this size, and the guard would not
keep their parse anyway. Real operations are far smaller."""

INTROSPECTION_FIELDS = frozenset({"__schema", "__type", "__typename"})
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


class PersistedDocumentRefused(Exception):
    """A GraphQL error answered before anything runs: `code`, `message`, no data.

    `request_error`: a request error in the GraphQL-over-HTTP sense (4xx with
    application/graphql-response+json, 200 with application/json). PERSISTED_QUERY_NOT_FOUND is
    not one: it answers 200 with either media type, as Apollo Server does (Apollo Client before
    3.8 turns persisted queries off for good on a 400).
    """

    def __init__(self, code: str, message: str, *, request_error: bool) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_error = request_error


def not_found() -> PersistedDocumentRefused:
    # Apollo Client's persisted-queries link retries with the text on this message or code.
    return PersistedDocumentRefused(NOT_FOUND, "PersistedQueryNotFound", request_error=False)


def not_allowed() -> PersistedDocumentRefused:
    return PersistedDocumentRefused(
        NOT_ALLOWED,
        "Only trusted documents run here: send the id of a document of the server's manifest "
        '(`documentId: "sha256:<hex>"` or `extensions.persistedQuery.sha256Hash`).',
        request_error=True,
    )


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def requested_hash(extensions: dict[str, Any] | None, document_id: str | None) -> str | None:
    """The SHA-256 (lower-case hex) a request names its document by, if any."""
    found = None
    persisted = extensions.get("persistedQuery") if extensions else None
    if persisted is not None:
        if not isinstance(persisted, dict):
            raise HTTPException(400, "`extensions.persistedQuery` must be an object.")
        if persisted.get("version", APQ_VERSION) != APQ_VERSION:
            raise HTTPException(400, "Unsupported persisted query version: send `version: 1`.")
        value = persisted.get("sha256Hash")
        if isinstance(value, str):  # also as the client preset's `__meta__.hash` writes it
            value = value.removeprefix(DOCUMENT_ID_PREFIX)
        if not isinstance(value, str) or not _SHA256.fullmatch(value):
            raise HTTPException(
                400, "`extensions.persistedQuery.sha256Hash` must be 64 hexadecimal digits."
            )
        found = value.lower()
    if document_id is not None:
        value = document_id.removeprefix(DOCUMENT_ID_PREFIX)
        if value == document_id or not _SHA256.fullmatch(value):
            raise HTTPException(
                400, "`documentId` must be `sha256:` followed by 64 hexadecimal digits."
            )
        if found is not None and found != value.lower():
            raise HTTPException(
                400, "`documentId` and `extensions.persistedQuery` name different documents."
            )
        found = value.lower()
    return found


def load_manifest(path: str) -> dict[str, str]:
    """A manifest's documents by SHA-256 (lower-case hex); refuses to start on a bad one."""

    def bad(reason: str) -> RuntimeError:
        return RuntimeError(f"PERSISTED_DOCUMENTS={path}: {reason}")

    try:
        data = orjson.loads(Path(path).read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise bad(f"cannot be read as JSON ({exc})") from None
    if not isinstance(data, dict):
        raise bad("expected a JSON object of document ids to document texts.")
    entries: list[tuple[object, object]]
    if data.get("format") == APOLLO_MANIFEST_FORMAT:
        operations = data.get("operations")
        if not isinstance(operations, list) or not all(isinstance(o, dict) for o in operations):
            raise bad("an Apollo manifest needs a list of `operations`.")
        entries = [(operation.get("id"), operation.get("body")) for operation in operations]
    else:
        entries = list(data.items())
    manifest: dict[str, str] = {}
    for key, text in entries:
        if not isinstance(key, str) or not isinstance(text, str):
            raise bad(f"the entry {key!r} is not an id with a document's text.")
        digest = key.removeprefix(DOCUMENT_ID_PREFIX)
        if not _SHA256.fullmatch(digest):
            raise bad(f"{key!r} is not a SHA-256 id (`sha256:<hex>` or `<hex>`).")
        if sha256_hex(text) != digest.lower():
            raise bad(f"{key!r} is not the SHA-256 of its document.")
        manifest[digest.lower()] = text
    return manifest


def introspection_only(query: str, max_tokens: int) -> bool:
    """Whether every operation of `query` selects only introspection fields at its root (no
    fragment there, which could hide other fields)."""
    try:
        document = parse(query, no_location=True, max_tokens=max_tokens)
    except GraphQLError:
        return False
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    return bool(operations) and all(
        isinstance(selection, FieldNode) and selection.name.value in INTROSPECTION_FIELDS
        for operation in operations
        for selection in operation.selection_set.selections
    )


class PersistedDocuments:
    """The manifest, the APQ store and its cache, and the allow-list: one per process."""

    def __init__(self, settings: Settings, database: Database) -> None:
        if settings.persisted_documents_only and not settings.persisted_documents:
            raise RuntimeError(
                "PERSISTED_DOCUMENTS_ONLY=true needs a manifest: set it in PERSISTED_DOCUMENTS."
            )
        self.database = database
        self.only = settings.persisted_documents_only
        self.automatic = settings.automatic_persisted_queries and not self.only
        self.keep = settings.automatic_persisted_queries_max
        self.introspection = settings.introspection
        self.max_tokens = settings.max_tokens
        path = settings.persisted_documents
        self.manifest = load_manifest(path) if path else {}
        self._manifest_texts = frozenset(self.manifest.values()) if self.only else frozenset()
        self._registered: OrderedDict[str, str] = OrderedDict()
        self._introspection: BoundedCache[str, bool] = BoundedCache(64)

    def concerns(self, extensions: dict[str, Any] | None, document_id: str | None) -> bool:
        """Whether a request needs `resolve` (cheap: ordinary requests skip everything else)."""
        return (
            self.only
            or document_id is not None
            or (extensions is not None and "persistedQuery" in extensions)
        )

    async def resolve(
        self, query: str | None, extensions: dict[str, Any] | None, document_id: str | None
    ) -> str | None:
        """The text to run (registering it when APQ asks), or a refusal."""
        digest = requested_hash(extensions, document_id)
        if digest is None:
            if self.only and query is not None and not self._allowed_as_text(query):
                raise not_allowed()
            return query
        known = self.manifest.get(digest)
        if query is not None:
            if sha256_hex(query) != digest:
                raise HTTPException(
                    400,
                    "The document's SHA-256 does not match the hash sent with it: hash the "
                    "exact text sent as `query` (UTF-8).",
                )
            if known is not None:
                return known
            if self.only:
                raise not_allowed()
            if self.automatic:
                await self._register(digest, query)
            return query
        if known is not None:
            return known
        if self.automatic and (found := await self._find(digest)) is not None:
            return found
        raise not_found()

    def _allowed_as_text(self, query: str) -> bool:
        """Allow-list mode, a document sent as text: the manifest's own text, or introspection
        when INTROSPECTION allows it."""
        if query in self._manifest_texts:
            return True
        if not self.introspection or "__" not in query:
            return False
        if len(query) > CACHEABLE_QUERY_CHARS:
            return introspection_only(query, self.max_tokens)
        return self._introspection.get_or_make(
            query, lambda: introspection_only(query, self.max_tokens)
        )

    def _remember(self, digest: str, text: str) -> None:
        self._registered[digest] = text
        self._registered.move_to_end(digest)
        if len(self._registered) > CACHE_SIZE:
            self._registered.popitem(last=False)

    async def _find(self, digest: str) -> str | None:
        text = self._registered.get(digest)
        if text is not None:
            self._registered.move_to_end(digest)
            return text
        try:
            text = await self.database.run(functools.partial(self._select, digest))
        except sa.exc.SQLAlchemyError:  # the client sends the text again: it still works
            log.exception("Could not look up a persisted document")
            return None
        if text is not None and len(text) <= MAX_REGISTERED_CHARS:
            self._remember(digest, text)
        return text

    async def _register(self, digest: str, text: str) -> None:
        if digest in self._registered or len(text) > MAX_REGISTERED_CHARS:
            return
        try:
            await self.database.run(functools.partial(self._insert, digest, text))
        except sa.exc.SQLAlchemyError:  # the document still runs; its hash stays unknown
            log.exception("Could not register a persisted document")
            return
        self._remember(digest, text)

    def _select(self, digest: str) -> str | None:
        with self.database.engine.connect() as connection:
            query = sa.select(DOCUMENTS.c.document).where(DOCUMENTS.c.sha256 == digest)
            text: str | None = connection.execute(query).scalar()
            return text

    def _insert(self, digest: str, text: str) -> None:
        """Store the document (once: concurrent registrations are fine), then drop the oldest
        past AUTOMATIC_PERSISTED_QUERIES_MAX, in one transaction."""
        with self.database.engine.connect() as connection:
            connection.execution_options(sqlite_immediate=True)  # SQLite: take the write lock
            insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
            with connection.begin():
                connection.execute(
                    insert(DOCUMENTS)
                    .values(sha256=digest, document=text, created_at=utcnow())
                    .on_conflict_do_nothing()
                )
                beyond = (
                    sa.select(DOCUMENTS.c.sha256)
                    .order_by(DOCUMENTS.c.created_at.desc(), DOCUMENTS.c.sha256.desc())
                    .offset(self.keep)
                )
                connection.execute(sa.delete(DOCUMENTS).where(DOCUMENTS.c.sha256.in_(beyond)))
