"""Tokens in, a principal out: built-in HS256 tokens and an external provider's JWKS; passwords.

Algorithms are pinned per key source: HS256 is verified only with `JWT_SECRET`, asymmetric
algorithms only with keys from the JWKS, so a token cannot pick how it is checked.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from graphql_api.db import Principal
from graphql_api.errors import BadUserInput, Unauthenticated
from graphql_api.settings import Settings

log = logging.getLogger(__name__)

BUILT_IN_ALGORITHM = "HS256"
REQUIRED_CLAIMS = ["exp", "iat", "sub"]
ISSUED_AT_US_CLAIM = "iat_us"
"""Built-in tokens' issue time in microseconds (`iat` has whole seconds): a token issued in the
same second as a `changePassword` or `signOutEverywhere`, before or after it, is told apart."""
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
DEV_SECRET_FILE = Path(".jwt-secret")
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024


def resolve_jwt_secret(settings: Settings) -> str | None:
    """`JWT_SECRET`; in development without one, a generated secret kept in `.jwt-secret`.

    The file makes the secret survive restarts and be shared by every worker process and by
    `graphql-api token`. Production never generates one (see `check_production_settings`).
    """
    if settings.jwt_secret:
        return settings.jwt_secret
    if settings.environment == "production":
        return None
    if not DEV_SECRET_FILE.exists():
        DEV_SECRET_FILE.touch(mode=0o600)
        DEV_SECRET_FILE.write_text(secrets.token_urlsafe(48))
        log.warning(
            "JWT_SECRET is not set: generated a development secret in %s. "
            "Set JWT_SECRET in production.",
            DEV_SECRET_FILE.resolve(),
        )
    return DEV_SECRET_FILE.read_text().strip()


def check_production_settings(settings: Settings) -> None:
    """Refuse to run in production with no way to verify tokens."""
    if settings.environment == "production" and not (settings.jwt_secret or settings.jwt_jwks_url):
        raise RuntimeError("ENVIRONMENT=production needs JWT_SECRET or JWT_JWKS_URL to be set.")


class Passwords:
    """argon2id hashing; checking an unknown email costs what checking a wrong password costs.

    The async methods run on a few threads of their own: off the event loop, and never more
    hashes at once than PASSWORD_HASH_THREADS, so parallel sign-ups queue instead of each
    taking ARGON2_MEMORY_KIB and a core.
    """

    def __init__(self, settings: Settings) -> None:
        self._hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost, memory_cost=settings.argon2_memory_kib
        )
        self._decoy = self._hasher.hash(secrets.token_urlsafe(16))
        threads = settings.password_hash_threads or os.cpu_count() or 2
        self._threads = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="argon2")

    async def hash_async(self, password: str) -> str:
        return await asyncio.get_running_loop().run_in_executor(self._threads, self.hash, password)

    async def verify_async(self, password_hash: str | None, password: str) -> bool:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, self.verify, password_hash, password)

    @staticmethod
    def check_strength(password: str, field: str = "password") -> None:
        if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
            raise BadUserInput(
                f"`{field}`: use {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters.",
                field=field,
            )

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        """True if `password` matches; a missing hash is checked against a decoy (same cost)."""
        try:
            self._hasher.verify(password_hash or self._decoy, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        return password_hash is not None


class JwksCache:
    """An identity provider's signing keys, fetched over HTTP and kept for a while.

    An unknown `kid` triggers a refetch (keys rotate), but at most once per
    `jwks_min_refetch_seconds`, so a flood of made-up `kid`s cannot hammer the provider.
    """

    def __init__(self, settings: Settings, client: httpx.AsyncClient | None = None) -> None:
        assert settings.jwt_jwks_url
        self._url = settings.jwt_jwks_url
        self._ttl = settings.jwks_cache_seconds
        self._min_refetch = settings.jwks_min_refetch_seconds
        self._client = client or httpx.AsyncClient(timeout=5.0)
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    async def key(self, kid: str | None) -> jwt.PyJWK:
        """The key a token names; a token without `kid` works when the set has one key."""
        key = self._find(kid)
        if key is None or self._age() >= self._ttl:
            async with self._lock:  # one fetch at a time; waiters reuse its result
                age = self._age()
                if age >= self._ttl or (self._find(kid) is None and age >= self._min_refetch):
                    await self._fetch()
            key = self._find(kid)
        if key is None:
            raise Unauthenticated("Token signed with an unknown key.")
        return key

    def _find(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is None:
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)

    def _age(self) -> float:
        return time.monotonic() - self._fetched_at

    async def _fetch(self) -> None:
        try:
            response = await self._client.get(self._url)
            response.raise_for_status()
            key_set = jwt.PyJWKSet.from_dict(response.json())
        except (httpx.HTTPError, ValueError, jwt.PyJWKSetError) as exc:
            log.warning("Could not fetch the JWKS from %s: %s", self._url, exc)
            self._fetched_at = time.monotonic()  # back off as if fetched
            return
        self._keys = {key.key_id or "": key for key in key_set.keys}
        self._fetched_at = time.monotonic()

    async def aclose(self) -> None:
        await self._client.aclose()


VERIFIED_TOKENS_KEPT = 4096
"""Verified tokens remembered per process (a few hundred bytes each)."""


class Tokens:
    """Issues built-in tokens and verifies built-in and external ones."""

    def __init__(self, settings: Settings, jwks: JwksCache | None = None) -> None:
        self._settings = settings
        self._secret = resolve_jwt_secret(settings)
        self._jwks = (
            jwks if jwks is not None else (JwksCache(settings) if settings.jwt_jwks_url else None)
        )
        # Tokens verified lately, each with the wall-clock time until which it stays valid:
        # a client sends the same token with every request, and checking its signature and
        # claims again costs more than the rest of the request's authentication.
        self._verified: dict[str, tuple[Principal, float]] = {}

    def issue(self, user_id: str, *, after: datetime | None = None) -> str:
        """A built-in token for `user_id`. `after`: the user's `tokens_valid_after` when it was
        just set (changePassword): the token is issued later than it, even within the same
        microsecond or on a clock behind the one that set it, so it works."""
        if not self._secret:
            raise RuntimeError("Built-in tokens need JWT_SECRET.")
        issued_us = time.time_ns() // 1000
        if after is not None:
            issued_us = max(issued_us, (after - EPOCH) // MICROSECOND + 1)
        now = issued_us // 1_000_000
        claims = {
            "sub": user_id,
            "iat": now,
            ISSUED_AT_US_CLAIM: issued_us,
            "exp": now + self._settings.jwt_lifetime_seconds,
            "iss": self._settings.token_issuer,
        }
        return jwt.encode(claims, self._secret, algorithm=BUILT_IN_ALGORITHM)

    async def verify(self, token: str) -> Principal:
        """The principal of a valid token; UNAUTHENTICATED with a helpful reason otherwise.

        A token verified before is answered from memory until it expires (a provider's, for
        no longer than its key set is kept, since its key may be retired). Revocation is not
        the token's business: the database checks it on every request."""
        known = self._verified.get(token)
        if known is not None:
            principal, valid_until = known
            if time.time() < valid_until:
                return principal
            del self._verified[token]
        principal, valid_until = await self._verify_signed(token)
        if len(self._verified) >= VERIFIED_TOKENS_KEPT:
            del self._verified[next(iter(self._verified))]  # the longest kept goes first
        self._verified[token] = (principal, valid_until)
        return principal

    async def _verify_signed(self, token: str) -> tuple[Principal, float]:
        """`verify` without memory: the principal, and until when the token stays valid."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            # Not only DecodeError: a header with an unsupported `crit` or a non-string `kid`
            # raises InvalidTokenError (which used to escape as an HTTP 500).
            raise Unauthenticated("Malformed token.") from None
        algorithm = header.get("alg")
        if algorithm == BUILT_IN_ALGORITHM and self._secret:
            claims = self._decode(token, self._secret, algorithm, self._settings.token_issuer, None)
            principal = Principal(user_id=claims["sub"], issued_at=_issued_at(claims, precise=True))
            return principal, self._expiry(claims)
        if self._jwks is not None and algorithm in self._settings.jwt_algorithms:
            key = await self._jwks.key(header.get("kid"))
            claims = self._decode(
                token, key, algorithm, self._settings.jwt_issuer, self._settings.jwt_audience
            )
            email = claims.get("email")
            # Identities are keyed by (issuer, subject); without JWT_ISSUER, by the key set's URL.
            issuer = self._settings.jwt_issuer or self._settings.jwt_jwks_url or ""
            principal = Principal.of_provider(
                issuer,
                claims["sub"],
                email if isinstance(email, str) else None,
                _issued_at(claims, precise=False),
            )
            key_kept_until = time.time() + self._settings.jwks_cache_seconds
            return principal, min(self._expiry(claims), key_kept_until)
        raise Unauthenticated("Token algorithm not accepted.")

    def expires_at(self, token: str) -> float:
        """When a token that `verify` accepted stops being accepted (seconds since the epoch):
        a WebSocket connection closes then. Its claims are read again, not checked again."""
        return self._expiry(jwt.decode(token, options={"verify_signature": False}))

    def _expiry(self, claims: dict[str, Any]) -> float:
        """When PyJWT starts refusing a token with these (verified) claims."""
        return float(claims["exp"]) + self._settings.jwt_leeway_seconds

    def _decode(
        self,
        token: str,
        key: Any,
        algorithm: str,
        issuer: str | None,
        audience: str | None,
    ) -> dict[str, Any]:
        required = [*REQUIRED_CLAIMS, *(["iss"] if issuer else []), *(["aud"] if audience else [])]
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                issuer=issuer,
                audience=audience,
                leeway=self._settings.jwt_leeway_seconds,
                options={"require": required, "verify_aud": audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("Token expired: sign in again.") from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated("Token issuer not accepted.") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated("Token audience not accepted.") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthenticated(f"Token lacks the `{exc.claim}` claim.") from None
        except jwt.PyJWTError:  # any other defect of the token or its key (PyJWKError too)
            raise Unauthenticated("Invalid token.") from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not 0 < len(subject) <= 255:
            raise Unauthenticated("Invalid token subject.")
        return claims

    async def aclose(self) -> None:
        if self._jwks is not None:
            await self._jwks.aclose()


def _issued_at(claims: dict[str, Any], *, precise: bool) -> datetime:
    """When a verified token was issued. Built-in tokens carry microseconds (`iat_us`; tokens
    from before it have `iat` only); a provider's `iat` has whole seconds, read as the start of
    its second, so a provider token from the second of a sign-out counts as issued before it."""
    if precise:
        issued_us = claims.get(ISSUED_AT_US_CLAIM)
        if isinstance(issued_us, int) and not isinstance(issued_us, bool):
            try:
                return EPOCH + issued_us * MICROSECOND
            except OverflowError:
                raise Unauthenticated("Invalid token.") from None
    try:  # as PyJWT read it when it checked the claim
        return EPOCH + timedelta(seconds=int(claims["iat"]))
    except (OverflowError, ValueError, TypeError):
        raise Unauthenticated("Invalid token.") from None


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; UNAUTHENTICATED if malformed."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("Send the token as `Authorization: Bearer <token>`.")
    return token.strip()
