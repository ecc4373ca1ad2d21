"""For differential tests: a varied data set, and a generator of operations over the schema.

The generator walks the GraphQL schema's types (not a list of hand-written queries), choosing
fields, aliases, named and inline fragments (on the right type and on others), `@skip` and
`@include` (literal or variable), `__typename`, merged duplicate fields, and arguments, literal
or as variables, drawn from pools of good and bad values: ids of the user's rows, of another
user's, of trashed rows, of the wrong type, and garbage; page sizes in and out of range;
cursors of the right list, of another ordering, and garbage. So errors come up at every depth.
A seed makes the corpus the same on every run.
"""

from __future__ import annotations

import base64
import json
import random
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from graphql import (
    GraphQLEnumType,
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLUnionType,
    get_named_type,
    is_leaf_type,
    parse,
)

from graphql_api.conversations import repository as conversations
from graphql_api.db import allow_account_lookup, scope_to_user
from graphql_api.limits import fragments_of, operation_cost, selected_operation
from graphql_api.models import MessageRole, Priority, utcnow
from graphql_api.relay import encode_id
from graphql_api.settings import Settings
from graphql_api.tags import repository as tags
from graphql_api.tasks import repository as tasks
from graphql_api.users import repository as users


@dataclass
class Seeded:
    """What the generator draws ids from, and whom to ask as."""

    users: dict[str, str] = field(default_factory=dict)  # role -> user id
    ids: dict[str, list[str]] = field(default_factory=dict)  # "Task", "Tag", ... -> global ids
    bad_ids: list[str] = field(default_factory=list)  # not the user's, trashed, garbage


def _global(type_name: str, row: Any) -> str:
    return str(encode_id(type_name, row["id"]))


def seed_rich_user(conn: sa.Connection, user_id: str, rng: random.Random) -> dict[str, list[str]]:
    """Tags, tasks with every kind of value, subtask chains and diamonds, trashed rows,
    conversations with messages of every role. Returns the global ids by type."""
    scope_to_user(conn, user_id)
    now = utcnow()
    tag_rows = [
        tags.create_tag(conn, user_id, {"name": f"tag {n}", "color": f"#{n:02d}{n:02d}AA"})
        for n in range(6)
    ]
    tag_ids = [row["id"] for row in tag_rows]
    task_rows: list[Any] = []
    for n in range(30):
        fields: dict[str, Any] = {
            "title": f"Task {n}" + (" urgent" if n % 7 == 0 else ""),
            "description": None if n % 3 else f"About task {n}",
            "priority": list(Priority)[n % 3],
            "due_date": None if n % 4 == 0 else now + timedelta(days=rng.randrange(-20, 20)),
            "completed": n % 5 == 0,
        }
        parent = task_rows[n // 3]["id"] if n >= 6 and n % 2 == 0 else None
        chosen = rng.sample(tag_ids, k=rng.choice((0, 1, 2, 3)))
        task_rows.append(tasks.create_task(conn, user_id, fields, tag_ids=chosen, parent_id=parent))
    tasks.add_subtask(conn, user_id, task_rows[1]["id"], task_rows[12]["id"])  # two parents
    trashed_tasks = [tasks.delete_task(conn, user_id, task_rows[n]["id"]) for n in (4, 12, 29)]
    trashed_tag = tags.delete_tag(conn, user_id, tag_ids[5])
    chats = [
        conversations.create_conversation(conn, user_id, {"title": f"Chat {n}"}) for n in range(4)
    ]
    message_rows: list[Any] = []
    for chat, count in zip(chats, (0, 1, 7, 3), strict=True):
        for m in range(count):
            role = list(MessageRole)[m % 3]
            message_rows.append(
                conversations.post_message(
                    conn, user_id, chat["id"], {"role": role, "content": f"Message {m}"}
                )
            )
    trashed_chat = conversations.delete_conversation(conn, user_id, chats[3]["id"])
    return {
        "Task": [_global("Task", row) for row in task_rows],
        "Tag": [_global("Tag", row) for row in tag_rows],
        "Conversation": [_global("Conversation", row) for row in chats],
        "Message": [_global("Message", row) for row in message_rows],
        "User": [str(encode_id("User", user_id))],
        "trashed": [
            *(_global("Task", row) for row in trashed_tasks),
            _global("Tag", trashed_tag),
            _global("Conversation", trashed_chat),
        ],
    }


def seed(engine: sa.Engine, *, seed_value: int = 11) -> Seeded:
    """Two users made row by row (the rich one asked as; the other for ids that are not
    yours). The load benchmark's bulk user is added by the caller."""
    rng = random.Random(seed_value)
    seeded = Seeded()
    with engine.begin() as conn:
        allow_account_lookup(conn)
        rich = users.create_user(conn, email="rich@example.com", name="Rich")["id"]
        other = users.create_user(conn, email="other@example.com", name="Other")["id"]
    with engine.begin() as conn:
        mine = seed_rich_user(conn, rich, rng)
    with engine.begin() as conn:
        theirs = seed_rich_user(conn, other, rng)
    seeded.users = {"rich": rich, "other": other}
    seeded.ids = {kind: ids for kind, ids in mine.items() if kind != "trashed"}
    garbage = [
        "",
        "nope",
        base64.urlsafe_b64encode(b"Task:not-a-uuid").decode(),
        base64.urlsafe_b64encode(b"Unknown:1").decode(),
        base64.urlsafe_b64encode(f"Task:{uuid.UUID(int=7)}".encode()).decode(),
        "VGFzazo=",  # "Task:"
    ]
    seeded.bad_ids = [
        *mine["trashed"],
        *(theirs[kind][0] for kind in ("Task", "Tag", "Conversation", "Message", "User")),
        *garbage,
    ]
    return seeded


# --- the generator ---------------------------------------------------------------------------

MAX_COST = Settings(_env_file=None).max_cost  # type: ignore[call-arg]
PAGE_SIZES = [1, 1, 2, 2, 2, 3, 3, 5, 1, 2, 0, 20, 100, 101, -1, 1000]
SEARCHES = ["", "1", "tag", "Task 1", "urgent", "zzz", "%", "_", "ß"]
DATES = ["2000-01-01T00:00:00Z", "2030-06-01T12:00:00+02:00", "2026-01-01T00:00:00Z"]
ROOT_FIELDS = [
    "me", "tasks", "tasks", "task", "node", "node", "tags", "tag", "conversations",
    "conversation", "taskStats",
]  # fmt: skip


@dataclass
class _Operation:
    definitions: list[str] = field(default_factory=list)  # "$v1: Int"
    variables: dict[str, Any] = field(default_factory=dict)
    fragments: dict[str, str] = field(default_factory=dict)
    aliases: int = 0
    directives: int = 0
    fields: int = 0


class OperationGenerator:
    """Random, valid-by-construction operations (mostly) over `schema`'s Query type."""

    MAX_DEPTH = 5
    MAX_FIELDS = 45
    MAX_ALIASES = 10

    def __init__(
        self,
        schema: GraphQLSchema,
        seeded: Seeded,
        cursors: dict[str, list[str]],
        seed_value: int,
    ) -> None:
        self.schema = schema
        self.seeded = seeded
        self.cursors = cursors
        self.rng = random.Random(seed_value)
        self.count = 0

    def operation(self) -> tuple[str, dict[str, Any]]:
        """An operation and its variables; mostly within the cost limit (a few are not)."""
        while True:
            text, variables = self._operation()
            if self._cost(text, variables) <= MAX_COST or self.rng.random() < 0.05:
                return text, variables

    def _cost(self, text: str, variables: dict[str, Any]) -> int:
        document = parse(text)
        operation = selected_operation(document, None)
        assert operation is not None
        return operation_cost(self.schema, operation, fragments_of(document), variables)

    def _operation(self) -> tuple[str, dict[str, Any]]:
        self.count += 1
        self.op = _Operation()
        query_type = self.schema.query_type
        assert query_type is not None
        selections = self._root_selections(query_type)
        header = "query" if self.rng.random() < 0.3 else f"query Generated{self.count}"
        if self.op.definitions:
            header += f"({', '.join(self.op.definitions)})"
        elif header == "query" and self.rng.random() < 0.5:
            header = ""
        text = f"{header} {{ {selections} }}".strip()
        return "\n".join([text, *self.op.fragments.values()]), self.op.variables

    # Selections

    def _root_selections(self, query_type: GraphQLObjectType) -> str:
        names = self.rng.sample(ROOT_FIELDS, k=self.rng.choice((1, 1, 2, 2, 3)))
        seen: set[str] = set()
        parts = [self._field(query_type, name, query_type.fields[name], 1, seen) for name in names]
        if self.rng.random() < 0.1:
            parts.append("__typename")
        return " ".join(parts)

    def _selection_set(self, type_: GraphQLNamedType, depth: int) -> str:
        if isinstance(type_, GraphQLInterfaceType | GraphQLUnionType):
            return self._abstract_selections(type_, depth)
        assert isinstance(type_, GraphQLObjectType)
        body = self._object_selections(type_, depth)
        roll = self.rng.random()
        if roll < 0.12:  # a named fragment, spread (maybe twice, maybe conditionally)
            name = f"F{len(self.op.fragments)}"
            self.op.fragments[name] = f"fragment {name} on {type_.name} {{ {body} }}"
            spread = f"...{name}{self._maybe_directive(0.3)}"
            return f"{spread} {spread}" if self.rng.random() < 0.2 else spread
        if roll < 0.2:
            condition = f" on {type_.name}" if self.rng.random() < 0.5 else ""
            extra = self._object_selections(type_, depth)
            return f"{body} ...{condition}{self._maybe_directive(0.5)} {{ {extra} }}"
        return body

    def _object_selections(self, type_: GraphQLObjectType, depth: int) -> str:
        fields = list(type_.fields.items())
        if depth >= self.MAX_DEPTH or self.op.fields >= self.MAX_FIELDS:
            fields = [(n, f) for n, f in fields if is_leaf_type(get_named_type(f.type))]
        count = min(len(fields), self.rng.choice((1, 2, 2, 3, 3, 4)))
        seen: set[str] = set()
        parts = [
            self._field(type_, name, f, depth + 1, seen)
            for name, f in self.rng.sample(fields, count)
        ]
        if self.rng.random() < 0.1:
            parts.append("__typename")
        first = parts[0]
        if "(" not in first and self.rng.random() < 0.1:  # the same key again: fields merge
            head, brace, _ = first.partition("{")
            parts.append(head.split("@")[0].strip() + (" { __typename }" if brace else ""))
        return " ".join(parts)

    def _abstract_selections(self, type_: GraphQLNamedType, depth: int) -> str:
        parts = ["id"] if self.rng.random() < 0.7 else ["__typename"]
        possible = list(self.schema.get_possible_types(type_))  # type: ignore[arg-type]
        for object_type in self.rng.sample(possible, k=self.rng.choice((1, 2, 3))):
            body = self._object_selections(object_type, depth)
            if self.rng.random() < 0.3:
                name = f"F{len(self.op.fragments)}"
                self.op.fragments[name] = f"fragment {name} on {object_type.name} {{ {body} }}"
                parts.append(f"...{name}{self._maybe_directive(0.2)}")
            else:
                parts.append(f"... on {object_type.name}{self._maybe_directive(0.2)} {{ {body} }}")
        return " ".join(parts)

    def _field(
        self,
        parent: GraphQLObjectType,
        name: str,
        definition: GraphQLField,
        depth: int,
        seen: set[str],
    ) -> str:
        """One field; a name already in this selection set gets an alias (mostly), since the
        same key with other arguments is invalid."""
        self.op.fields += 1
        text = name
        repeated = name in seen and self.rng.random() < 0.9
        seen.add(name)
        if repeated or (self.op.aliases < self.MAX_ALIASES and self.rng.random() < 0.15):
            self.op.aliases += 1
            text = f"a{self.op.aliases}_{name}: {name}"
        arguments = self._arguments(parent, name, definition)
        if arguments:
            text += f"({arguments})"
        text += self._maybe_directive(0.08)
        named = get_named_type(definition.type)
        if not is_leaf_type(named):
            text += f" {{ {self._selection_set(named, depth)} }}"
        return text

    def _maybe_directive(self, probability: float) -> str:
        if self.rng.random() >= probability:
            return ""
        self.op.directives += 1
        name = self.rng.choice(("skip", "include"))
        if self.rng.random() < 0.5:
            return f" @{name}(if: {self.rng.choice(('true', 'false'))})"
        variable = self._variable("Boolean!", self.rng.random() < 0.5)
        return f" @{name}(if: {variable})"

    # Arguments

    def _arguments(self, parent: GraphQLObjectType, name: str, definition: GraphQLField) -> str:
        parts = []
        paging = self.rng.choice(("first", "first", "last", "both", "none"))
        for arg_name, argument in definition.args.items():
            required = isinstance(argument.type, GraphQLNonNull)
            if arg_name in {"first", "last"}:
                if paging not in {arg_name, "both"}:
                    continue
            elif not required and self.rng.random() < 0.55:
                continue
            value = self._argument_value(definition, name, arg_name, argument.type)
            as_variable = self.rng.random() < 0.35
            if as_variable:
                rendered = self._variable(str(argument.type), value)
            else:
                rendered = self._literal(value, argument.type)
            parts.append(f"{arg_name}: {rendered}")
        return ", ".join(parts)

    def _variable(self, type_text: str, value: Any) -> str:
        variable = f"v{len(self.op.definitions) + 1}"
        self.op.definitions.append(f"${variable}: {type_text}")
        self.op.variables[variable] = value
        return f"${variable}"

    def _argument_value(
        self, definition: GraphQLField, field_name: str, name: str, type_: GraphQLInputType
    ) -> Any:
        rng = self.rng
        if name == "id":
            return self._id(field_name)
        if name in {"first", "last"}:
            return rng.choice(PAGE_SIZES)
        if name in {"after", "before"}:
            kind = get_named_type(definition.type).name if rng.random() < 0.75 else "other"
            return rng.choice(self.cursors.get(kind) or self.cursors["other"])
        return self._input_value(type_)

    def _id(self, field_name: str) -> str:
        wanted = {"task": "Task", "tag": "Tag", "conversation": "Conversation"}.get(field_name)
        ids = self.seeded.ids
        if self.rng.random() < 0.7:
            kind = wanted or self.rng.choice(sorted(ids))
            return self.rng.choice(ids[kind])
        return self.rng.choice(self.seeded.bad_ids)

    def _input_value(self, type_: GraphQLInputType) -> Any:
        rng = self.rng
        if isinstance(type_, GraphQLNonNull):
            return self._input_value(type_.of_type)
        if isinstance(type_, GraphQLList):
            return [self._input_value(type_.of_type) for _ in range(rng.choice((0, 1, 2)))]
        if isinstance(type_, GraphQLEnumType):
            return rng.choice(list(type_.values))
        if isinstance(type_, GraphQLInputObjectType):
            chosen = [
                (name, f)
                for name, f in type_.fields.items()
                if isinstance(f.type, GraphQLNonNull) or rng.random() < 0.4
            ]
            return {name: self._input_field(name, f.type) for name, f in chosen}
        assert isinstance(type_, GraphQLScalarType)
        return self._scalar(type_.name)

    def _input_field(self, name: str, type_: GraphQLInputType) -> Any:
        if name == "tagIds":
            return [self._id("tag") for _ in range(self.rng.choice((0, 1, 2)))]
        if name == "search":
            return self.rng.choice(SEARCHES)
        return self._input_value(type_)

    def _scalar(self, name: str) -> Any:
        rng = self.rng
        return {
            "Boolean": lambda: rng.random() < 0.5,
            "Int": lambda: rng.choice(PAGE_SIZES),
            "String": lambda: rng.choice(SEARCHES),
            "ID": lambda: self._id(""),
            "DateTime": lambda: rng.choice(DATES),
        }[name]()

    def _literal(self, value: Any, type_: GraphQLInputType) -> str:
        named = get_named_type(type_)
        if value is None:
            return "null"
        if isinstance(value, list):
            inner = type_.of_type if isinstance(type_, GraphQLNonNull) else type_
            item_type = inner.of_type if isinstance(inner, GraphQLList) else inner
            return "[" + ", ".join(self._literal(v, item_type) for v in value) + "]"
        if isinstance(value, dict):
            assert isinstance(named, GraphQLInputObjectType)
            fields = (f"{k}: {self._literal(v, named.fields[k].type)}" for k, v in value.items())
            return "{" + ", ".join(fields) + "}"
        if isinstance(named, GraphQLEnumType):
            return str(value)
        return json.dumps(value)
