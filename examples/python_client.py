"""A Python client of the API with `gql`, validating every operation against the server's
schema (fetched by introspection) before sending it.

    python examples/python_client.py http://127.0.0.1:8000/graphql you@example.com password123

It signs up (or signs in, if the account exists), creates tasks (several in one request: a
refused one answers null with its error, the others are saved) and lists the open tasks.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from gql import Client, gql
from gql.transport.exceptions import TransportQueryError
from gql.transport.httpx import HTTPXTransport

SIGN_UP = gql(
    """
    mutation SignUp($email: String!, $password: String!) {
      signUp(input: {email: $email, password: $password}) { token }
    }
    """
)
SIGN_IN = gql(
    """
    mutation SignIn($email: String!, $password: String!) {
      signIn(input: {email: $email, password: $password}) { token }
    }
    """
)
OPEN_TASKS = gql(
    """
    query OpenTasks($after: String) {
      tasks(filter: {completed: false}, first: 50, after: $after) {
        totalCount
        pageInfo { hasNextPage endCursor }
        nodes { title priority }
      }
    }
    """
)


def client(url: str, token: str | None = None) -> Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    transport = HTTPXTransport(url=url, headers=headers)
    return Client(transport=transport, fetch_schema_from_transport=True)


def token_for(url: str, email: str, password: str) -> str:
    with client(url) as session:
        variables = {"email": email, "password": password}
        try:
            return str(session.execute(SIGN_UP, variable_values=variables)["signUp"]["token"])
        except TransportQueryError as error:  # the account exists: sign in instead
            if (error.errors or [{}])[0].get("extensions", {}).get("code") != "CONFLICT":
                raise
            return str(session.execute(SIGN_IN, variable_values=variables)["signIn"]["token"])


def create_tasks(session: Any, inputs: list[dict[str, Any]]) -> list[dict[str, Any] | str]:
    """Creates the tasks in one request: for each input, the task, or why it was refused.

    Every mutation's result is nullable, so a refused one answers null with its error (its
    `path` names the alias) while the others are saved and answer their task."""
    variables = ", ".join(f"$t{i}: CreateTaskInput!" for i in range(len(inputs)))
    fields = " ".join(
        f"t{i}: createTask(input: $t{i}) {{ id title priority dueDate }}"
        for i in range(len(inputs))
    )
    document = gql(f"mutation CreateTasks({variables}) {{ {fields} }}")
    values = {f"t{i}": task for i, task in enumerate(inputs)}
    try:
        data, errors = session.execute(document, variable_values=values), []
    except TransportQueryError as error:  # some refused: `data` holds the others
        if error.data is None:  # the whole request was refused (a bad token, say)
            raise
        data, errors = error.data, error.errors or []
    reasons = {e["path"][0]: e["message"] for e in errors if e.get("path")}
    return [data[f"t{i}"] or reasons.get(f"t{i}", "refused") for i in range(len(inputs))]


def main(url: str, email: str, password: str) -> list[str]:
    token = token_for(url, email, password)
    with client(url, token) as session:
        due = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        wanted = [
            {"title": "Try the Python client", "priority": "HIGH", "dueDate": due},
            {"title": ""},  # refused (a title has 1 to 200 characters): only this one
        ]
        for task in create_tasks(session, wanted):
            if isinstance(task, str):
                print(f"refused: {task}")
            else:
                print(f"created {task['title']!r} ({task['priority']}, due {task['dueDate']})")
        titles: list[str] = []
        after = None
        while True:
            page = session.execute(OPEN_TASKS, variable_values={"after": after})["tasks"]
            titles += [task["title"] for task in page["nodes"]]
            if not page["pageInfo"]["hasNextPage"]:
                break
            after = page["pageInfo"]["endCursor"]
        print(f"{len(titles)} open tasks: {', '.join(titles)}")
        return titles


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:4])
