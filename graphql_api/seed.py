"""Data for trying the API out (`seed --demo`) and for measuring it (`seed --users N --tasks M`)."""

from __future__ import annotations

import random
import sys
import uuid
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from graphql_api.auth import Passwords, Tokens
from graphql_api.changes.record import recording
from graphql_api.conversations import repository as conversations
from graphql_api.db import allow_account_lookup, create_engine, scope_to_user
from graphql_api.models import (
    CONVERSATIONS,
    MESSAGES,
    TAGS,
    TASK_RELATIONSHIPS,
    TASK_TAGS,
    TASKS,
    USERS,
    MessageRole,
    Priority,
    utcnow,
)
from graphql_api.settings import Settings
from graphql_api.tags import repository as tags
from graphql_api.tasks import repository as tasks
from graphql_api.users import repository as users

DEMO_EMAIL = "demo@example.com"
DEMO_PASSWORD = "demo-password"  # noqa: S105  (documented, for local exploration only)


def token_for(settings: Settings, email: str, *, create: bool) -> str:
    """A token for the user with this email (created without a password if asked)."""
    engine = create_engine(settings, request_limits=False)
    with engine.begin() as conn:
        allow_account_lookup(conn)
        row = users.find_user_by_email(conn, users.normalise_email(email))
        if row is None:
            if not create:
                raise LookupError(f"No user {email}: pass --create to make one.")
            row = users.create_user(conn, email=email)
    engine.dispose()
    return Tokens(settings).issue(row["id"])


def seed_demo(settings: Settings) -> bool:
    """A demo user with tags, tasks, subtasks and a conversation, if the database is empty."""
    engine = create_engine(settings, request_limits=False)
    with engine.begin() as conn, recording(conn):  # the demo content starts the user's feed
        allow_account_lookup(conn)
        if conn.execute(sa.select(sa.func.count()).select_from(USERS)).scalar_one():
            return False
        password_hash = Passwords(settings).hash(DEMO_PASSWORD)
        user_id = users.create_user(
            conn, email=DEMO_EMAIL, name="Demo", password_hash=password_hash
        )["id"]
        scope_to_user(conn, user_id)
        _demo_content(conn, user_id)
    engine.dispose()
    return True


def _demo_content(conn: Connection, user_id: str) -> None:
    work = tags.create_tag(conn, user_id, {"name": "work", "color": "#2563EB"})["id"]
    home = tags.create_tag(conn, user_id, {"name": "home", "color": "#16A34A"})["id"]
    urgent = tags.create_tag(conn, user_id, {"name": "urgent", "color": "#DC2626"})["id"]
    now = utcnow()
    launch = tasks.create_task(
        conn,
        user_id,
        {
            "title": "Launch the todo API",
            "priority": Priority.HIGH,
            "due_date": now + timedelta(days=3),
            "description": "Ship it to production.",
        },
        tag_ids=[work, urgent],
    )["id"]
    for title in ("Write the README", "Run the benchmark", "Review security"):
        tasks.create_task(conn, user_id, {"title": title}, tag_ids=[work], parent_id=launch)
    tasks.create_task(
        conn, user_id, {"title": "Buy groceries", "priority": Priority.LOW}, tag_ids=[home]
    )
    tasks.create_task(
        conn,
        user_id,
        {"title": "Pay the electricity bill", "due_date": now - timedelta(days=1)},
        tag_ids=[home, urgent],
    )
    done = tasks.create_task(conn, user_id, {"title": "Set up the project"}, tag_ids=[work])
    tasks.complete_tasks(conn, user_id, [done["id"]], True)
    chat = conversations.create_conversation(conn, user_id, {"title": "Planning the launch"})
    for role, content in (
        (MessageRole.USER, "What is left before the launch?"),
        (MessageRole.ASSISTANT, "The README, the benchmark and a security review."),
    ):
        conversations.post_message(conn, user_id, chat["id"], {"role": role, "content": content})


def _progress(done: int, total: int) -> None:
    width = 40
    filled = width * done // max(total, 1)
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} users")
    if done == total:
        sys.stderr.write("\n")


def seed_bulk(
    settings: Settings,
    *,
    users: int,
    tasks: int,
    tags_per_user: int = 8,
    conversations_per_user: int = 3,
    messages_per_conversation: int = 20,
    seed: int = 42,
) -> list[str]:
    """A large, realistic data set (bulk inserts); returns the new users' ids.

    Users are `user{i}@example.com`. Each gets `tasks` tasks (a mix of priorities, due dates,
    completed ones), tags on most tasks, some subtasks, and conversations with messages.
    """
    rng = random.Random(seed)  # noqa: S311  (reproducible data, not secrets)
    engine = create_engine(settings, request_limits=False)
    user_ids: list[str] = []
    with engine.connect() as conn:
        allow_account_lookup(conn)
        start = conn.execute(sa.select(sa.func.count()).select_from(USERS)).scalar_one()
        conn.commit()
        for index in range(users):
            with conn.begin():
                user_ids.append(
                    _bulk_user(
                        conn,
                        rng,
                        start + index,
                        tasks,
                        tags_per_user,
                        conversations_per_user,
                        messages_per_conversation,
                    )
                )
            _progress(index + 1, users)
    engine.dispose()
    return user_ids


def _bulk_user(
    conn: Connection,
    rng: random.Random,
    index: int,
    task_count: int,
    tag_count: int,
    conversation_count: int,
    message_count: int,
) -> str:
    now = utcnow()
    user_id = str(uuid.uuid4())
    scope_to_user(conn, user_id)
    conn.execute(
        sa.insert(USERS).values(
            id=user_id,
            email=f"user{index}@example.com",
            name=f"User {index}",
            password_hash=None,
            created_at=now,
            updated_at=now,
        )
    )
    owned = {"user_id": user_id}
    tag_ids = [uuid.uuid4() for _ in range(tag_count)]
    _insert(
        conn,
        TAGS,
        [
            {
                **owned,
                "id": tag_id,
                "name": f"tag {n}",
                "color": f"#{rng.randrange(1 << 24):06X}",
                "created_at": now,
                "updated_at": now,
                "deleted_at": None,
            }
            for n, tag_id in enumerate(tag_ids)
        ],
    )
    task_rows: list[dict[str, Any]] = []
    for n in range(task_count):
        created = now - timedelta(minutes=task_count - n)
        completed = rng.random() < 0.3
        task_rows.append(
            {
                **owned,
                "id": uuid.uuid4(),
                "title": f"Task {n} of user {index}",
                "description": "Something to do" if rng.random() < 0.5 else None,
                "completed": completed,
                "completed_at": created if completed else None,
                "priority": rng.choice(list(Priority)),
                "due_date": created + timedelta(days=rng.randrange(-10, 30))
                if rng.random() < 0.6
                else None,
                "created_at": created,
                "updated_at": created,
                "deleted_at": None,
            }
        )
    _insert(conn, TASKS, task_rows)
    task_ids = [row["id"] for row in task_rows]
    if tag_ids:
        _insert(
            conn,
            TASK_TAGS,
            [
                {**owned, "task_id": task_id, "tag_id": tag_id}
                for task_id in task_ids
                for tag_id in rng.sample(tag_ids, k=min(len(tag_ids), rng.choice((0, 1, 2, 2, 3))))
            ],
        )
    _insert(
        conn,
        TASK_RELATIONSHIPS,
        [
            {**owned, "parent_task_id": task_ids[n], "child_task_id": task_ids[n + 1]}
            for n in range(0, len(task_ids) - 1, 10)
        ],
    )
    for c in range(conversation_count):
        conversation_id = uuid.uuid4()
        _insert(
            conn,
            CONVERSATIONS,
            [
                {
                    **owned,
                    "id": conversation_id,
                    "title": f"Chat {c}",
                    "created_at": now,
                    "updated_at": now - timedelta(hours=c),
                    "deleted_at": None,
                }
            ],
        )
        _insert(
            conn,
            MESSAGES,
            [
                {
                    **owned,
                    "id": uuid.uuid4(),
                    "conversation_id": conversation_id,
                    "role": MessageRole.USER if m % 2 == 0 else MessageRole.ASSISTANT,
                    "content": f"Message {m}",
                    "created_at": now - timedelta(minutes=message_count - m),
                }
                for m in range(message_count)
            ],
        )
    return user_id


def _insert(conn: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(sa.insert(table), rows)
