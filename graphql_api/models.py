"""The todo tables, and the validation limits of every user-editable column.

Owned rows are keyed by `(user_id, id)` and every link between owned rows carries `user_id` in
its foreign key, so the database itself refuses a link between two users' rows, and the schema
can be distributed by `user_id` (Citus) unchanged.

Each table has a `...Fields` base holding the columns a client may set, with their limits;
`Fields.model_validate(...)` enforces them (a `table=True` model does not validate on
construction). The GraphQL types are derived from the table classes (see `graphql_api.mirror`).
"""

from __future__ import annotations

import enum
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from pydantic import field_validator
from sqlmodel import Field, SQLModel

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
SQLModel.metadata.naming_convention = NAMING_CONVENTION

TITLE_MAX = 200
DESCRIPTION_MAX = 1000
TAG_NAME_MAX = 50
CONVERSATION_TITLE_MAX = 200
MESSAGE_MAX = 10000
NAME_MAX = 100
EMAIL_MAX = 320
COLOR_PATTERN = re.compile(r"^#[0-9A-Fa-f]{6}$")


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python, on PostgreSQL and SQLite alike.

    SQLite has no time zones: values are stored as naive UTC and made aware again on the way out.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; pass a timezone-aware value")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None or value.tzinfo is UTC:  # asyncpg's are UTC already: kept as they are
            return value
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _str_enum(enum_cls: type[enum.Enum], name: str) -> sa.Enum:
    """Store an enum by its value as a short string with a CHECK constraint (portable, readable)."""
    return sa.Enum(
        enum_cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=16,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


class Priority(enum.Enum):
    """How urgent a task is. Ordered: LOW < MEDIUM < HIGH."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


PRIORITY_RANK = {Priority.LOW: 1, Priority.MEDIUM: 2, Priority.HIGH: 3}


class MessageRole(enum.Enum):
    """Who wrote a message in a conversation."""

    USER = "user"
    ASSISTANT = "assistant"
    SYSTEM = "system"


def created_at_field() -> Any:
    return Field(
        default_factory=utcnow,
        sa_type=UTCDateTime,
        nullable=False,
        description="When the row was created (UTC).",
    )


def updated_at_field() -> Any:
    return Field(
        default_factory=utcnow,
        sa_type=UTCDateTime,
        nullable=False,
        sa_column_kwargs={"onupdate": utcnow},
        description="When the row last changed (UTC).",
    )


def deleted_at_field(what: str) -> Any:
    return Field(
        default=None,
        sa_type=UTCDateTime,
        nullable=True,
        description=f"When the {what} was moved to the trash (UTC); null while it is live.",
    )


def owner_field() -> Any:
    return Field(
        primary_key=True,
        foreign_key="users.id",
        ondelete="CASCADE",
        max_length=255,
        description="The owner.",
    )


def id_field(what: str) -> Any:
    return Field(
        default_factory=uuid.uuid4, primary_key=True, description=f"The {what}'s identifier."
    )


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


# --- users -----------------------------------------------------------------------------------


class UserFields(SQLModel):
    """What a user may change about themselves."""

    name: str = Field(
        default="", max_length=NAME_MAX, description="The display name; may be empty."
    )

    _strip_name = field_validator("name", mode="before")(_strip)


BUILT_IN = "issuer IS NULL"
"""The rows of built-in accounts (signUp, `graphql-api token --create`): not from a provider."""


class User(UserFields, table=True):
    """An account: created by `signUp`, or provisioned from an external identity provider."""

    __tablename__ = "users"
    __table_args__ = (
        # Emails are never verified, so they identify built-in accounts only: a provider's
        # identity is its (issuer, subject), and a built-in email can neither block nor
        # capture it.
        sa.Index(
            "uq_users_email_built_in",
            "email",
            unique=True,
            postgresql_where=sa.text(BUILT_IN),
            sqlite_where=sa.text(BUILT_IN),
        ),
        sa.UniqueConstraint("issuer", "subject"),
        sa.CheckConstraint(
            "(issuer IS NULL AND subject IS NULL) OR "
            "(issuer IS NOT NULL AND subject IS NOT NULL AND password_hash IS NULL)",
            name="external_identity",
        ),
    )

    id: str = Field(
        primary_key=True,
        max_length=255,
        description="The user's identifier: generated, or derived from the provider identity.",
    )
    email: str = Field(
        max_length=EMAIL_MAX,
        description="The email address, stored lower-cased so it is unique ignoring case.",
    )
    password_hash: str | None = Field(
        default=None,
        max_length=255,
        description="argon2id hash; null for users of an external identity provider.",
    )
    issuer: str | None = Field(
        default=None,
        max_length=255,
        description="The identity provider (`iss`) of a provisioned user; null for built-in ones.",
    )
    subject: str | None = Field(
        default=None, max_length=255, description="The provider's `sub` of a provisioned user."
    )
    created_at: datetime = created_at_field()
    updated_at: datetime = updated_at_field()
    tokens_valid_after: datetime | None = Field(
        default=None,
        sa_type=UTCDateTime,
        nullable=True,
        description="Tokens issued at or before this time (changePassword, signOutEverywhere) "
        "no longer work; null: no cut-off. Microsecond precision.",
    )
    change_seq: int = Field(
        default=0,
        sa_type=sa.BigInteger,
        sa_column_kwargs={"server_default": "0"},
        description="The position of the user's latest change (graphql_api.changes); advanced "
        "under this row's lock, so positions are gapless and in commit order.",
    )
    changes_kept_after: int = Field(
        default=0,
        sa_type=sa.BigInteger,
        sa_column_kwargs={"server_default": "0"},
        description="Changes at or before this position were purged (retention).",
    )


# --- tasks -----------------------------------------------------------------------------------


class TaskFields(SQLModel):
    """The columns of a task that a client sets, with their limits."""

    title: str = Field(
        min_length=1, max_length=TITLE_MAX, description="What to do: 1 to 200 characters."
    )
    description: str | None = Field(
        default=None, max_length=DESCRIPTION_MAX, description="Details: up to 1000 characters."
    )
    completed: bool = Field(default=False, description="Whether the task is done.")
    priority: Priority = Field(
        default=Priority.MEDIUM,
        sa_type=_str_enum(Priority, "priority"),
        nullable=False,
        description="How urgent the task is.",
    )
    due_date: datetime | None = Field(
        default=None, sa_type=UTCDateTime, nullable=True, description="When the task is due."
    )

    _strip_title = field_validator("title", mode="before")(_strip)


class Task(TaskFields, table=True):
    """A todo item."""

    __tablename__ = "tasks"
    __table_args__ = (
        sa.Index("ix_tasks_user_id_created_at", "user_id", "created_at", "id"),
        sa.Index("ix_tasks_user_id_completed", "user_id", "completed"),
        sa.Index("ix_tasks_user_id_due_date", "user_id", "due_date"),
        sa.Index("ix_tasks_user_id_updated_at", "user_id", "updated_at", "id"),
    )

    user_id: str = owner_field()
    id: uuid.UUID = id_field("task")
    completed_at: datetime | None = Field(
        default=None,
        sa_type=UTCDateTime,
        nullable=True,
        description="When the task was last completed; null while it is open.",
    )
    created_at: datetime = created_at_field()
    updated_at: datetime = updated_at_field()
    deleted_at: datetime | None = deleted_at_field("task")


# --- tags ------------------------------------------------------------------------------------


class TagFields(SQLModel):
    """The columns of a tag that a client sets, with their limits."""

    name: str = Field(
        min_length=1,
        max_length=TAG_NAME_MAX,
        description="The label: 1 to 50 characters, unique per user ignoring case.",
    )
    color: str = Field(
        default="#3B82F6",
        max_length=7,
        description="Display colour as #RRGGBB.",
    )

    _strip_name = field_validator("name", mode="before")(_strip)

    @field_validator("color")
    @classmethod
    def _color_is_hex(cls, value: str) -> str:
        if not COLOR_PATTERN.match(value):
            raise ValueError("must be a colour in #RRGGBB form")
        return value.upper()


class Tag(TagFields, table=True):
    """A label a user attaches to tasks."""

    __tablename__ = "tags"
    __table_args__ = (
        # Unique ignoring case among live tags: a deleted tag frees its name.
        sa.Index(
            "uq_tags_user_id_name_live",
            "user_id",
            sa.func.lower(sa.column("name")),
            unique=True,
            postgresql_where=sa.text("deleted_at IS NULL"),
            sqlite_where=sa.text("deleted_at IS NULL"),
        ),
    )

    user_id: str = owner_field()
    id: uuid.UUID = id_field("tag")
    created_at: datetime = created_at_field()
    updated_at: datetime = updated_at_field()
    deleted_at: datetime | None = deleted_at_field("tag")


class TaskTag(SQLModel, table=True):
    """A tag attached to a task. Both foreign keys include `user_id`."""

    __tablename__ = "task_tags"
    __table_args__ = (
        sa.ForeignKeyConstraint(
            ["user_id", "task_id"], ["tasks.user_id", "tasks.id"], ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id", "tag_id"], ["tags.user_id", "tags.id"], ondelete="CASCADE"
        ),
        sa.Index("ix_task_tags_user_id_tag_id", "user_id", "tag_id"),
    )

    user_id: str = Field(primary_key=True, max_length=255)
    task_id: uuid.UUID = Field(primary_key=True)
    tag_id: uuid.UUID = Field(primary_key=True)


class TaskRelationship(SQLModel, table=True):
    """A subtask link: `child_task_id` is a subtask of `parent_task_id`. Cycles are refused."""

    __tablename__ = "task_relationships"
    __table_args__ = (
        sa.ForeignKeyConstraint(
            ["user_id", "parent_task_id"], ["tasks.user_id", "tasks.id"], ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id", "child_task_id"], ["tasks.user_id", "tasks.id"], ondelete="CASCADE"
        ),
        sa.CheckConstraint("parent_task_id <> child_task_id", name="not_self"),
        sa.Index("ix_task_relationships_user_id_child_task_id", "user_id", "child_task_id"),
    )

    user_id: str = Field(primary_key=True, max_length=255)
    parent_task_id: uuid.UUID = Field(primary_key=True)
    child_task_id: uuid.UUID = Field(primary_key=True)


# --- conversations ---------------------------------------------------------------------------


class ConversationFields(SQLModel):
    """The columns of a conversation that a client sets, with their limits."""

    title: str = Field(
        default="New Chat",
        max_length=CONVERSATION_TITLE_MAX,
        description="The conversation's title: up to 200 characters.",
    )

    _strip_title = field_validator("title", mode="before")(_strip)


class Conversation(ConversationFields, table=True):
    """A chat thread. `updated_at` moves on every new message, so it orders by latest activity."""

    __tablename__ = "conversations"
    __table_args__ = (
        sa.Index("ix_conversations_user_id_updated_at", "user_id", "updated_at", "id"),
    )

    user_id: str = owner_field()
    id: uuid.UUID = id_field("conversation")
    created_at: datetime = created_at_field()
    updated_at: datetime = updated_at_field()
    deleted_at: datetime | None = deleted_at_field("conversation")


class MessageFields(SQLModel):
    """The columns of a message that a client sets, with their limits."""

    role: MessageRole = Field(
        sa_type=_str_enum(MessageRole, "message_role"),
        nullable=False,
        description="Who wrote the message.",
    )
    content: str = Field(
        min_length=1, max_length=MESSAGE_MAX, description="The text: 1 to 10000 characters."
    )


class Message(MessageFields, table=True):
    """One message of a conversation. Messages are immutable once posted."""

    __tablename__ = "messages"
    __table_args__ = (
        sa.ForeignKeyConstraint(
            ["user_id", "conversation_id"],
            ["conversations.user_id", "conversations.id"],
            ondelete="CASCADE",
        ),
        # Serves both the foreign key and "latest messages of a conversation".
        sa.Index(
            "ix_messages_user_id_conversation_id_created_at",
            "user_id",
            "conversation_id",
            "created_at",
            "id",
        ),
    )

    user_id: str = Field(primary_key=True, max_length=255, description="The owner.")
    id: uuid.UUID = id_field("message")
    conversation_id: uuid.UUID = Field(description="The conversation the message belongs to.")
    created_at: datetime = created_at_field()


# --- the change feed -------------------------------------------------------------------------

CHANGE_KINDS = ("CREATED", "UPDATED", "DELETED", "RESTORED")
CHANGED_TYPES = ("Task", "Tag", "Conversation", "Message")


def _one_of(column: str, values: tuple[str, ...]) -> sa.CheckConstraint:
    listed = ", ".join(f"'{value}'" for value in values)
    return sa.CheckConstraint(f"{column} IN ({listed})", name=f"{column}_known")


class ChangeEntry(SQLModel, table=True):
    """One change of one object in its owner's feed (see `graphql_api.changes`): positions
    `seq` run 1, 2, 3, ... per user without a gap, in commit order."""

    __tablename__ = "changes"
    __table_args__ = (_one_of("kind", CHANGE_KINDS), _one_of("type", CHANGED_TYPES))

    user_id: str = owner_field()
    seq: int = Field(
        primary_key=True,
        sa_type=sa.BigInteger,
        sa_column_kwargs={"autoincrement": False},
        description="The position in the user's feed.",
    )
    kind: str = Field(max_length=16, description="CREATED, UPDATED, DELETED or RESTORED.")
    type: str = Field(max_length=16, description="The GraphQL type of the changed object.")
    object_id: uuid.UUID = Field(description="The changed object's id (not its global ID).")
    committed_at: datetime = Field(
        sa_type=UTCDateTime, nullable=False, description="When the change was written (UTC)."
    )


# --- operational tables ----------------------------------------------------------------------


class IdempotencyKey(SQLModel, table=True):
    """A create mutation sent with an `Idempotency-Key`: its retries return the same row."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (sa.Index("ix_idempotency_keys_user_id_created_at", "user_id", "created_at"),)

    user_id: str = owner_field()
    key: str = Field(primary_key=True, max_length=255, description="The client's key.")
    field: str = Field(
        primary_key=True, max_length=100, description="The mutation field (or alias) it ran."
    )
    fingerprint: str = Field(max_length=64, description="SHA-256 of the mutation's input.")
    result_id: uuid.UUID = Field(description="The id of the row the mutation created.")
    created_at: datetime = created_at_field()


class SignInThrottle(SQLModel, table=True):
    """Sign-in and sign-up attempts per key (email, email and address, address), shared by every
    worker process (see `graphql_api.users.throttle`)."""

    __tablename__ = "sign_in_throttles"

    key: str = Field(
        primary_key=True, max_length=64, description="SHA-256 of `<kind>:<email or address>`."
    )
    failures: int = Field(default=0, description="Attempts counted in the current window.")
    window_started_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    blocked_until: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)


class PersistedDocument(SQLModel, table=True):
    """A document registered by Apollo's automatic persisted queries, found by its SHA-256 from
    then on by every worker and replica (see `graphql_api.persisted`). Documents are not secret
    and belong to no user; the store keeps the newest AUTOMATIC_PERSISTED_QUERIES_MAX."""

    __tablename__ = "persisted_documents"
    __table_args__ = (sa.Index("ix_persisted_documents_created_at", "created_at"),)

    sha256: str = Field(
        primary_key=True, max_length=64, description="SHA-256 of the document, lower-case hex."
    )
    document: str = Field(sa_type=sa.Text, nullable=False, description="The document's text.")
    created_at: datetime = created_at_field()


OWNED_TABLES: tuple[type[SQLModel], ...] = (
    Task,
    Tag,
    TaskTag,
    TaskRelationship,
    Conversation,
    Message,
    IdempotencyKey,
    ChangeEntry,
)
"""Every table whose rows belong to one user (all carry `user_id`)."""


# Core handles on the tables: the data layer builds its SQL from these.
def _table(model: type[SQLModel]) -> sa.Table:
    table: sa.Table = model.__table__  # type: ignore[attr-defined]
    return table


USERS = _table(User)
TASKS = _table(Task)
TAGS = _table(Tag)
TASK_TAGS = _table(TaskTag)
TASK_RELATIONSHIPS = _table(TaskRelationship)
CONVERSATIONS = _table(Conversation)
MESSAGES = _table(Message)
IDEMPOTENCY_KEYS = _table(IdempotencyKey)
SIGN_IN_THROTTLES = _table(SignInThrottle)
PERSISTED_DOCUMENTS = _table(PersistedDocument)
CHANGES = _table(ChangeEntry)
