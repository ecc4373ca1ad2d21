"""Objects by global ID (`Query.node`, `Change.node`): through the request's loaders, scoped
to the caller like every other read."""

from __future__ import annotations

from typing import Any

from graphql_api.context import Info
from graphql_api.conversations.types import Conversation, Message
from graphql_api.errors import NotFound
from graphql_api.loaders import load_by_global_id
from graphql_api.relay import Node, decode_id
from graphql_api.tags.types import Tag
from graphql_api.tasks.types import Task
from graphql_api.users import repository as users
from graphql_api.users.types import User


async def load_node(info: Info, global_id: str) -> Node | None:
    """The object a global ID names, or None (missing, another user's, or not an ID of ours:
    the same answer for each)."""
    context = info.context
    try:
        type_name, raw_id = decode_id(global_id)
    except NotFound:
        return None
    if type_name == "User":
        if raw_id != context.user_id:
            return None
        return User.from_row(await context.db.read(users.get_user))
    loaders = context.loaders
    by_type: dict[str, tuple[Any, Any]] = {
        "Task": (loaders.task_by_id, Task.from_row),
        "Tag": (loaders.tag_by_id, Tag.from_row),
        "Conversation": (loaders.conversation_by_id, Conversation.from_row),
        "Message": (loaders.message_by_id, Message.from_row),
    }
    if type_name not in by_type:
        return None
    loader, make = by_type[type_name]
    row = await load_by_global_id(loader, global_id, type_name)
    node: Node | None = None if row is None else make(row)
    return node
