"""The initial todo schema: users, tasks, tags, their links, conversations and messages.

Every owned table is keyed by (user_id, id) and every link between owned rows carries user_id
in its foreign key, so the database refuses a link between two users' rows.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

USER_ID = sa.String(255)


def _timestamps(*, deleted: bool) -> list[sa.Column]:  # type: ignore[type-arg]
    columns = [
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    ]
    if deleted:
        columns.append(sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
    return columns


def _owner() -> list[sa.Column | sa.Constraint]:  # type: ignore[type-arg]
    return [
        sa.Column("user_id", USER_ID, nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
    ]


def _owned_by_user(table: str) -> list[sa.Constraint]:
    return [
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=f"fk_{table}_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", "id", name=f"pk_{table}"),
    ]


def _link(table: str, user_col: str, columns: tuple[str, str], targets: tuple[str, str]) -> list:  # type: ignore[type-arg]
    """A junction table between two owned rows of the same user."""
    first, second = columns
    return [
        sa.Column(user_col, USER_ID, nullable=False),
        sa.Column(first, sa.Uuid(), nullable=False),
        sa.Column(second, sa.Uuid(), nullable=False),
        *(
            sa.ForeignKeyConstraint(
                ["user_id", column],
                [f"{target}.user_id", f"{target}.id"],
                name=f"fk_{table}_user_id_{column}_{target}",
                ondelete="CASCADE",
            )
            for column, target in zip(columns, targets, strict=True)
        ),
        sa.PrimaryKeyConstraint("user_id", first, second, name=f"pk_{table}"),
    ]


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("id", USER_ID, nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=True),
        *_timestamps(deleted=False),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("email", name="uq_users_email"),
    )

    op.create_table(
        "tasks",
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("description", sa.String(1000), nullable=True),
        sa.Column("completed", sa.Boolean(), nullable=False),
        sa.Column(
            "priority",
            sa.Enum(
                "low", "medium", "high", name="priority", native_enum=False,
                create_constraint=True, length=16,
            ),
            nullable=False,
        ),
        sa.Column("due_date", sa.DateTime(timezone=True), nullable=True),
        *_owner(),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        *_timestamps(deleted=True),
        *_owned_by_user("tasks"),
    )
    op.create_index("ix_tasks_user_id_created_at", "tasks", ["user_id", "created_at", "id"])
    op.create_index("ix_tasks_user_id_updated_at", "tasks", ["user_id", "updated_at", "id"])
    op.create_index("ix_tasks_user_id_completed", "tasks", ["user_id", "completed"])
    op.create_index("ix_tasks_user_id_due_date", "tasks", ["user_id", "due_date"])

    op.create_table(
        "tags",
        sa.Column("name", sa.String(50), nullable=False),
        sa.Column("color", sa.String(7), nullable=False),
        *_owner(),
        *_timestamps(deleted=True),
        *_owned_by_user("tags"),
    )
    # Tag names are unique per user ignoring case, among live tags only.
    op.create_index(
        "uq_tags_user_id_name_live",
        "tags",
        ["user_id", sa.text("lower(name)")],
        unique=True,
        postgresql_where=sa.text("deleted_at IS NULL"),
        sqlite_where=sa.text("deleted_at IS NULL"),
    )

    op.create_table(
        "task_tags", *_link("task_tags", "user_id", ("task_id", "tag_id"), ("tasks", "tags"))
    )
    op.create_index("ix_task_tags_user_id_tag_id", "task_tags", ["user_id", "tag_id"])

    op.create_table(
        "task_relationships",
        *_link(
            "task_relationships",
            "user_id",
            ("parent_task_id", "child_task_id"),
            ("tasks", "tasks"),
        ),
        sa.CheckConstraint(
            "parent_task_id <> child_task_id", name="ck_task_relationships_not_self"
        ),
    )
    op.create_index(
        "ix_task_relationships_user_id_child_task_id",
        "task_relationships",
        ["user_id", "child_task_id"],
    )

    op.create_table(
        "conversations",
        sa.Column("title", sa.String(200), nullable=False),
        *_owner(),
        *_timestamps(deleted=True),
        *_owned_by_user("conversations"),
    )
    op.create_index(
        "ix_conversations_user_id_updated_at", "conversations", ["user_id", "updated_at", "id"]
    )

    op.create_table(
        "messages",
        sa.Column(
            "role",
            sa.Enum(
                "user", "assistant", "system", name="message_role", native_enum=False,
                create_constraint=True, length=16,
            ),
            nullable=False,
        ),
        sa.Column("content", sa.String(10000), nullable=False),
        *_owner(),
        sa.Column("conversation_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id", "conversation_id"],
            ["conversations.user_id", "conversations.id"],
            name="fk_messages_user_id_conversation_id_conversations",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "id", name="pk_messages"),
    )
    op.create_index(
        "ix_messages_user_id_conversation_id_created_at",
        "messages",
        ["user_id", "conversation_id", "created_at", "id"],
    )


def downgrade() -> None:
    # Children before parents; dropping a table drops its indexes.
    for table in (
        "messages",
        "conversations",
        "task_relationships",
        "task_tags",
        "tags",
        "tasks",
        "users",
    ):
        op.drop_table(table)
