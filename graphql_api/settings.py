"""Every knob of the service, read from the environment (and a `.env` file) in one place."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

LOCAL_ORIGINS = r"^https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?$"
"""Browser origins on this machine, any port: allowed by default in development."""


class Settings(BaseSettings):
    """Service configuration. Each field maps to the upper-case environment variable of its name."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    environment: Literal["development", "production"] = Field(
        "development",
        description="`production` refuses to start without a JWT secret or JWKS settings.",
    )
    database_url: str = Field(
        "sqlite:///./todo.db",
        description="SQLAlchemy URL: the embedded SQLite file by default, "
        "or postgresql+psycopg2://user:pass@host/db.",
    )
    db_pool_size: int = Field(10, ge=1, description="PostgreSQL connections kept per process.")
    db_max_overflow: int = Field(10, ge=0, description="Extra connections opened under load.")
    db_pool_timeout: float = Field(
        5.0, gt=0, description="Seconds a request waits for a free connection before failing."
    )
    db_statement_timeout_ms: int = Field(
        5000,
        ge=0,
        description="PostgreSQL statement_timeout of the API's connections (0: none). Not sent "
        "with DATABASE_POOLER=transaction: set it on the role.",
    )
    db_plan_cache_mode: Literal["auto", "force_generic_plan", "force_custom_plan"] = Field(
        "force_generic_plan",
        description="PostgreSQL plan_cache_mode of the request path's prepared statements. Its "
        "statements are scoped by an indexed user_id, so one generic plan serves every user; "
        "`auto` re-planned them at every execution, a quarter of PostgreSQL's CPU per request "
        "(docs/benchmarks.md). Not sent when `auto`, nor with DATABASE_POOLER=transaction "
        "(nothing is prepared).",
    )
    db_lock_timeout_ms: int = Field(
        2000,
        ge=0,
        description="PostgreSQL lock_timeout of the API's connections (0: none). Not sent with "
        "DATABASE_POOLER=transaction: set it on the role.",
    )
    db_idle_in_transaction_timeout_ms: int = Field(
        30000,
        ge=0,
        description="PostgreSQL idle_in_transaction_session_timeout (0: none). Not sent with "
        "DATABASE_POOLER=transaction: set it on the role.",
    )
    database_pooler: Literal["none", "transaction"] = Field(
        "none",
        description="`transaction`: DATABASE_URL reaches PostgreSQL through a pooler in "
        "transaction mode (PgBouncer, Neon's pooled endpoint), which may hand each transaction "
        "to a different server connection: no startup parameters (the DB_*_TIMEOUT_MS limits "
        "come from the role), and no prepared statement outlives its own statement.",
    )
    db_async_driver: bool = Field(
        True,
        description="PostgreSQL: the request path uses asyncpg on the event loop (psycopg2 "
        "stays for migrations and the CLI); false: psycopg2 in worker threads.",
    )
    db_threads: int = Field(
        0,
        ge=0,
        description="Threads running the synchronous driver; 0 means pool size plus overflow.",
    )

    jwt_secret: str | None = Field(
        None,
        description="HS256 key for built-in tokens. Unset in development: generated once "
        "and kept in `.jwt-secret`.",
    )
    token_issuer: str = Field("graphql-api", description="`iss` of built-in tokens.")
    jwt_lifetime_seconds: int = Field(
        3600 * 24, gt=0, description="Lifetime of built-in tokens (the `exp` claim)."
    )
    jwt_leeway_seconds: int = Field(
        30, ge=0, description="Clock skew tolerated when checking `exp`, `iat` and `nbf`."
    )
    jwt_jwks_url: str | None = Field(
        None, description="JWKS of an external identity provider (for example Better Auth)."
    )
    jwt_issuer: str | None = Field(None, description="Expected `iss` of external tokens.")
    jwt_audience: str | None = Field(None, description="Expected `aud` of external tokens.")
    jwt_algorithms: list[str] = Field(
        default_factory=lambda: ["EdDSA", "RS256", "ES256"],
        description="Algorithms accepted from the JWKS; HS256 is used for built-in tokens only.",
    )
    jwks_cache_seconds: int = Field(300, gt=0, description="How long fetched JWKS keys are kept.")
    jwks_min_refetch_seconds: float = Field(
        10.0,
        ge=0,
        description="Least time between two JWKS refetches caused by an unknown `kid`.",
    )

    argon2_time_cost: int = Field(3, ge=1, description="argon2id passes per password hash.")
    argon2_memory_kib: int = Field(
        65536, ge=64, description="argon2id memory per password hash, in KiB."
    )
    password_hash_threads: int = Field(
        0,
        ge=0,
        description="Password hashes and checks run at once, per process (each holds "
        "ARGON2_MEMORY_KIB); the rest wait their turn. 0: the number of cores.",
    )

    sign_in_max_failures_per_email_and_address: int = Field(
        5,
        ge=1,
        description="Failed sign-ins for one email from one client address before that pair is "
        "blocked for a while. An email alone is never blocked (its owner must get in): its "
        "failures slow every attempt down instead.",
    )
    sign_in_max_failures_per_address: int = Field(
        20, ge=1, description="Failed sign-ins from one client address before it is blocked."
    )
    sign_in_window_seconds: int = Field(900, gt=0, description="How long failures are remembered.")
    sign_in_block_seconds: int = Field(300, gt=0, description="How long a block lasts.")
    sign_in_slowdown_seconds: float = Field(
        0.5,
        ge=0,
        description="Delay before checking any password of an email with failures, per failure "
        "beyond the second (doubling, at most 8x).",
    )
    sign_up_max_per_address: int = Field(
        10, ge=1, description="Sign-ups from one client address per window."
    )
    sign_up_window_seconds: int = Field(
        3600, gt=0, description="The sign-up window; past the limit, an address waits this long."
    )

    changes_retention_days: float = Field(
        30,
        ge=0,
        description="How long the change feed keeps a change: `graphql-api purge` deletes older "
        "ones, and a `since` before them answers CURSOR_EXPIRED (0: the purge forgets all).",
    )
    use_dataloaders: bool = Field(
        True,
        description="Batch relationship loads. Off only to measure the naive path (benchmark).",
    )
    compiled_execution: bool = Field(
        True,
        description="Run queries on the compiled execution path (graphql_api.compiled); "
        "false: graphql-core's executor for everything (the reference path).",
    )
    graphiql: bool | None = Field(
        None,
        description="Serve the GraphiQL IDE on GET /graphql. Unset: on in development, "
        "off in production.",
    )
    graphiql_assets_dir: str | None = Field(
        None,
        description="Serve GraphiQL's scripts from this folder (laid out like unpkg.com: "
        "`graphiql@3.8.3/...`) instead of unpkg.com, for machines without internet access; "
        "`graphql-api graphiql-assets DIR` fills it.",
    )
    introspection: bool = Field(
        True, description="Answer introspection (client code generators need it)."
    )

    persisted_documents: str | None = Field(
        None,
        description="A trusted-documents manifest loaded at start: a JSON object mapping "
        "`sha256:<hex>` (or `<hex>`) to each document's text, as GraphQL Code Generator's "
        "client preset writes it (Apollo's persisted query manifest is read too). Clients send "
        "the id as `documentId` or `extensions.persistedQuery.sha256Hash`.",
    )
    persisted_documents_only: bool = Field(
        False,
        description="Run only the manifest's documents (production allow-list): any other "
        "answers PERSISTED_QUERY_NOT_ALLOWED, and nothing is registered. Introspection still "
        "follows INTROSPECTION.",
    )
    automatic_persisted_queries: bool = Field(
        True,
        description="Apollo's automatic persisted queries: a document sent with its SHA-256 is "
        "registered in the database (shared by every worker and replica), and its hash alone "
        "runs it from then on.",
    )
    automatic_persisted_queries_max: int = Field(
        10_000,
        ge=1,
        description="Documents the automatic persisted queries store keeps; past it, the "
        "oldest are dropped (their clients register them again).",
    )

    cors_allow_origins: Annotated[list[str] | None, NoDecode] = Field(
        None,
        description="Browser origins allowed to call the API (comma-separated, `*` for any). "
        "Unset: local origins on any port in development, none in production.",
    )
    cors_max_age_seconds: int = Field(
        600, ge=0, description="How long browsers may cache a CORS preflight answer."
    )

    max_depth: int = Field(8, ge=1, description="Deepest field nesting an operation may use.")
    max_aliases: int = Field(15, ge=0, description="Aliases per operation.")
    max_tokens: int = Field(1000, ge=1, description="Lexical tokens per operation.")
    max_directives: int = Field(50, ge=0, description="Directives per operation.")
    max_cost: int = Field(
        5000,
        ge=1,
        description="Estimated fields an operation may resolve; lists multiply by their page "
        "size. Also bounds the fields a document selects once its fragments are expanded.",
    )
    max_field_repeats: int = Field(
        30,
        ge=1,
        description="Times one field (response key) may be selected in one selection set, "
        "fragments included: validation compares such fields pairwise.",
    )
    max_body_bytes: int = Field(
        256 * 1024, ge=1024, description="Largest request body accepted, in bytes."
    )
    max_header_bytes: int = Field(
        16 * 1024, ge=1024, description="Largest total size of a request's headers, in bytes."
    )
    max_header_field_bytes: int = Field(
        8 * 1024, ge=256, description="Largest single request header (name and value), in bytes."
    )
    proxy_headers: bool = Field(
        False,
        description="Take the client address (sign-in and sign-up throttling, logs) and scheme "
        "from X-Forwarded-For and X-Forwarded-Proto, when the peer is in FORWARDED_ALLOW_IPS "
        "(a load balancer or reverse proxy). `serve --proxy-headers` overrides it.",
    )
    forwarded_allow_ips: str = Field(
        "127.0.0.1,::1",
        description="Peers whose X-Forwarded-* headers are trusted when PROXY_HEADERS is on: "
        "comma-separated addresses or networks (`10.0.0.0/8`), `*` for any (only when nothing "
        "but the proxy can reach the port). From anyone else they are ignored.",
    )
    timeout_graceful_shutdown: int = Field(
        8,
        ge=1,
        description="Seconds `serve` lets in-flight requests finish after SIGTERM before "
        "cancelling them. 8 fits inside `docker stop`'s 10 s and Kubernetes' 30 s.",
    )
    log_level: str = Field("INFO", description="Python logging level.")
    log_format: Literal["text", "json"] = Field(
        "text", description="`json`: one JSON object per log line, for log collectors."
    )
    metrics: bool = Field(True, description="Serve Prometheus metrics on GET /metrics.")
    prometheus_multiproc_dir: Path | None = Field(
        None,
        description="With several worker processes: the folder where each writes its metrics, "
        "so that any worker's /metrics adds up all of them. `graphql-api serve` creates it and "
        "empties it as it starts; prometheus-client reads it from the environment.",
    )

    @field_validator("prometheus_multiproc_dir", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value  # not the working directory

    # Tracing: OpenTelemetry's own variable names. Read here, so that a `.env` file turns it on
    # too; the SDK reads the other OTEL_* variables (headers, sampler, batching) from the
    # process environment itself.
    otel_exporter_otlp_endpoint: str | None = Field(
        None,
        description="OTLP/HTTP collector base URL (`http://collector:4318`): set, requests "
        "are traced and spans sent to `<url>/v1/traces`; unset, tracing is off and costs "
        "nothing.",
    )
    otel_exporter_otlp_traces_endpoint: str | None = Field(
        None,
        description="The full URL spans are sent to, used as given; also turns tracing on.",
    )
    otel_exporter_otlp_protocol: Literal["http/protobuf"] = Field(
        "http/protobuf",
        description="OTLP transport: only http/protobuf (a collector's port 4318); gRPC is "
        "refused at start rather than exporting to a port that does not speak it.",
    )
    otel_exporter_otlp_traces_protocol: Literal["http/protobuf"] | None = Field(
        None, description="The same, for traces only."
    )
    otel_traces_exporter: Literal["otlp", "none"] = Field(
        "otlp", description="`none`: no tracing, even with an endpoint."
    )
    otel_sdk_disabled: bool = Field(
        False, description="`true`: no tracing, even with an endpoint (OpenTelemetry's switch)."
    )
    otel_service_name: str | None = Field(
        None,
        description="`service.name` of the spans. Unset: `service.name` from "
        "OTEL_RESOURCE_ATTRIBUTES, else `graphql-api`.",
    )
    tracing_user_id_key: str | None = Field(
        None,
        description="Key of the HMAC that turns user ids into the pseudonyms spans carry "
        "(`enduser.pseudo.id`); give every replica the same one. Unset: derived from the "
        "built-in token key (JWT_SECRET), or random per process when there is none.",
    )

    database_listen_url: str | None = Field(
        None,
        description="PostgreSQL: where each process LISTENs for committed changes (one "
        "connection per process). Unset: DATABASE_URL. Set it to the direct (unpooled) "
        "address when DATABASE_URL goes through a transaction-mode pooler (PgBouncer, Neon's "
        "-pooler host), which cannot LISTEN.",
    )
    ws_connections_per_user: int = Field(
        10,
        ge=1,
        description="WebSocket connections one user may hold open, per process; past it, "
        "`connection_init` is refused (close code 4029).",
    )
    ws_subscriptions_per_connection: int = Field(
        20,
        ge=1,
        description="Operations running at once on one WebSocket connection; past it, a "
        "`subscribe` answers an error and the connection stays open.",
    )
    ws_queue_size: int = Field(
        100,
        ge=1,
        description="Notifications (one per committed write of its user) a subscription may "
        "have waiting while it is still sending earlier changes; past it, the client is too "
        "slow: the connection closes with 4013, and the client resumes from its last cursor.",
    )
    ws_connection_init_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="How long a new WebSocket may wait before sending `connection_init` "
        "(close code 4408 past it).",
    )

    @field_validator("cors_allow_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @property
    def cors_origin_regex(self) -> str | None:
        """The pattern of origins allowed when none are listed (development only)."""
        if self.cors_allow_origins is None and self.environment != "production":
            return LOCAL_ORIGINS
        return None

    @property
    def tracing_enabled(self) -> bool:
        """Whether requests are traced: an OTLP endpoint is configured and not switched off."""
        endpoint = self.otel_exporter_otlp_traces_endpoint or self.otel_exporter_otlp_endpoint
        return bool(endpoint) and not self.otel_sdk_disabled and self.otel_traces_exporter != "none"

    @property
    def otlp_traces_url(self) -> str | None:
        """Where spans go: the traces endpoint as given, or the base endpoint's `/v1/traces`
        (as the OpenTelemetry SDK resolves them)."""
        if self.otel_exporter_otlp_traces_endpoint:
            return self.otel_exporter_otlp_traces_endpoint
        if self.otel_exporter_otlp_endpoint:
            return self.otel_exporter_otlp_endpoint.rstrip("/") + "/v1/traces"
        return None

    @property
    def graphiql_enabled(self) -> bool:
        return self.graphiql if self.graphiql is not None else self.environment != "production"


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
