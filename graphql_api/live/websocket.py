"""graphql-transport-ws on /graphql: whom a connection acts for, its limits, and how it ends.

Strawberry's handler runs the protocol; this one adds what the API needs:
- `connection_init`'s payload carries the token, `{"Authorization": "Bearer <token>"}`. It is
  verified (signature, claims, and in the database: not signed out, account alive) before the
  `connection_ack`; without one the socket closes with 4401, with a bad one 4403.
- the socket closes with 4403 when the token expires, and when a read finds it signed out.
- at most `WS_CONNECTIONS_PER_USER` connections per user in this process (4029 past it) and
  `WS_SUBSCRIPTIONS_PER_CONNECTION` operations at once per connection (an error past it).
- every operation gets a context of its own (its database handle, its loaders, its request
  id), closed when it ends; a subscription gives its pooled connection back before each
  message it sends, so a subscriber that waits, or a client that reads slowly, holds none.
- a subscription that falls `WS_QUEUE_SIZE` commits behind closes the socket with 4013: the
  client reconnects and resumes from the last cursor it received.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Any

from graphql import GraphQLError
from prometheus_client import Counter
from starlette.websockets import WebSocketDisconnect
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage,
    Message,
    SubscribeMessage,
)
from strawberry.types.execution import PreExecutionError

from graphql_api.auth import bearer_token
from graphql_api.changes.repository import last_seq
from graphql_api.context import Context, Services
from graphql_api.db import Principal
from graphql_api.errors import ServiceUnavailable, Unauthenticated
from graphql_api.live.hub import Hub
from graphql_api.observability import request_id_var

log = logging.getLogger(__name__)

# Close codes. 44xx as graphql-transport-ws defines them; 40xx are this API's, and clients
# (graphql-ws's among them) reconnect after both of those.
UNAUTHORIZED = 4401
"""No token in `connection_init`'s payload (graphql-ws does not retry: the client must sign in)."""
FORBIDDEN = 4403
"""A token that is malformed, forged, expired or signed out; or one that expired meanwhile
(graphql-ws retries: a client whose `connectionParams` fetch a fresh token carries on)."""
TOO_MANY_CONNECTIONS = 4029
"""The user holds WS_CONNECTIONS_PER_USER connections to this process already."""
TOO_SLOW = 4013
"""The client read too slowly: reconnect and resubscribe with `since` = the last cursor."""
TRY_AGAIN_LATER = 1013
"""The database is unavailable (WebSocket's own code for a temporary condition)."""
MAX_REASON_BYTES = 123  # a close frame's reason, by RFC 6455

_operation: contextvars.ContextVar[LiveContext | None] = contextvars.ContextVar(
    "live_operation", default=None
)


@dataclass(frozen=True)
class Handshake:
    """What is known of a WebSocket before its `connection_init`."""

    services: Services


class LiveContext(Context):
    """The context of one operation on a WebSocket connection."""

    over_websocket = True

    def __init__(self, services: Services, principal: Principal, socket: LiveSocket) -> None:
        super().__init__(services, principal, client_address=socket.client_address)
        self.socket = socket

    @property
    def hub(self) -> Hub:
        hub = self.services.hub
        assert hub is not None
        return hub


def _reason(text: str) -> str:
    """`text`, cut to what a close frame can carry."""
    return text.encode()[:MAX_REASON_BYTES].decode(errors="ignore")


class LiveSocket(ASGIWebSocketAdapter):
    """Strawberry's WebSocket adapter, closed once: a subscription may ask for the close
    while another operation is sending. Nothing is sent once the close is asked for."""

    closed = False
    closes: Counter | None = None  # the metric, by close code
    _close_task: asyncio.Task[None] | None = None

    def __init__(self, view: Any, request: Any, response: Any) -> None:
        super().__init__(view, request, response)
        client = self.ws.client
        self.client_address = client.host if client else "unknown"

    async def send_json(self, message: Mapping[str, object]) -> None:
        """As text frames, as the protocol has it (the view's encoder answers bytes)."""
        if self.closed:
            raise WebSocketDisconnected  # ends the operation that sends
        data = self.view.encode_json(message)
        try:
            await self.ws.send_text(data.decode() if isinstance(data, bytes) else data)
        except WebSocketDisconnect as exc:
            raise WebSocketDisconnected from exc

    async def close(self, code: int, reason: str) -> None:
        if not self._closing(code):
            await self._close(code, reason)

    def close_soon(self, code: int, reason: str) -> None:
        """`close`, from where awaiting is not possible."""
        if not self._closing(code):
            self._close_task = asyncio.create_task(self._close(code, reason))

    def _closing(self, code: int) -> bool:
        """Whether a close was asked for already; if not, it is now."""
        if self.closed:
            return True
        self.closed = True
        if self.closes is not None:
            self.closes.labels(str(code)).inc()
        return False

    async def _close(self, code: int, reason: str) -> None:
        log.info("Closing a WebSocket: %s %s", code, reason)
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):  # the client left first
            await super().close(code, _reason(reason))


class LiveHandler(BaseGraphQLTransportWSHandler[Any, None]):
    """The protocol's handler, with the API's authentication, limits and contexts."""

    websocket: LiveSocket
    handshake: Handshake

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.websocket.closes = self.services.metrics.websocket_closes
        self.principal: Principal | None = None
        self._admitted = False
        self._expiry: asyncio.TimerHandle | None = None

    @property
    def services(self) -> Services:
        return self.handshake.services

    @property
    def hub(self) -> Hub:
        hub = self.services.hub
        assert hub is not None
        return hub

    # The base class runs each operation with `self.context`: here, the operation's own.
    @property
    def context(self) -> Any:
        return _operation.get() or self.handshake

    @context.setter
    def context(self, value: Any) -> None:
        self.handshake = value

    # --- connection_init -----------------------------------------------------------------

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        if self.connection_timed_out:
            return
        if self.connection_init_timeout_task:
            self.connection_init_timeout_task.cancel()
        payload = message.get("payload") or {}
        if not isinstance(payload, dict):
            await self.websocket.close(4400, "Invalid connection init payload")
            return
        if self.connection_init_received:
            await self.websocket.close(4429, "Too many initialisation requests")
            return
        self.connection_init_received = True
        refusal = await self._sign_in(payload)
        if refusal is not None:
            await self.websocket.close(*refusal)
            return
        await self.send_message({"type": "connection_ack"})
        self.connection_acknowledged = True

    async def _sign_in(self, payload: dict[str, Any]) -> tuple[int, str] | None:
        """Verify the payload's token and admit its user; the close code and reason if not."""
        authorization = payload.get("Authorization", payload.get("authorization"))
        if not authorization:
            return UNAUTHORIZED, 'Unauthorized: send {"Authorization": "Bearer <token>"}'
        try:
            if not isinstance(authorization, str) or (token := bearer_token(authorization)) is None:
                raise Unauthenticated("Send the token as `Authorization: Bearer <token>`.")
            principal = await self.services.tokens.verify(token)
            await self._check_in_database(principal)
        except Unauthenticated as exc:
            return FORBIDDEN, f"Forbidden: {exc.message}"
        except ServiceUnavailable:
            return TRY_AGAIN_LATER, "The database is unavailable: retry shortly."
        settings = self.services.settings
        if not self.hub.admit(principal.user_id, settings.ws_connections_per_user):
            limit = settings.ws_connections_per_user
            return TOO_MANY_CONNECTIONS, f"Too many connections: at most {limit} per user"
        self._admitted = True
        self.principal = principal
        delay = self.services.tokens.expires_at(token) - time.time()
        loop = asyncio.get_running_loop()
        self._expiry = loop.call_later(
            max(delay, 0), self.websocket.close_soon, FORBIDDEN, "Forbidden: token expired"
        )
        return None

    async def _check_in_database(self, principal: Principal) -> None:
        """What every request's first statement checks: the token is not signed out and its
        account exists (a provider's user is provisioned on first sight)."""
        db = self.services.database.request(principal)
        try:
            await db.read(last_seq)
        finally:
            await db.close()

    # --- operations ----------------------------------------------------------------------

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        limit = self.services.settings.ws_subscriptions_per_connection
        if (
            self.connection_acknowledged
            and message["id"] not in self.operations
            and len(self.operations) >= limit
        ):
            error = GraphQLError(
                f"Too many operations on this connection: at most {limit} at once. Complete "
                "one, or open another connection.",
                extensions={"code": "BAD_REQUEST", "limit": "subscriptionsPerConnection"},
            )
            await self.send_message(
                {"id": message["id"], "type": "error", "payload": [error.formatted]}
            )
            return
        await super().handle_subscribe(message)

    async def run_operation(self, operation: Operation[Any, None]) -> None:
        assert self.principal is not None
        context = LiveContext(self.services, self.principal, self.websocket)
        _operation.set(context)  # this task's own: the base class reads it as `self.context`
        request_id_var.set(context.request_id)
        try:
            await super().run_operation(operation)
        finally:
            await context.db.close()

    async def _send_result_stream(
        self, operation: Operation[Any, None], result_source: Any
    ) -> None:
        async with contextlib.aclosing(_refusals_first(result_source)) as results:
            await super()._send_result_stream(operation, results)

    async def send_message(self, message: Message) -> None:
        context = _operation.get()
        if context is not None and message["type"] == "next":
            # The client may take its time to read this: hold no pooled connection meanwhile.
            await context.db.release()
        await super().send_message(message)

    async def handle_task_exception(self, error: Exception) -> None:
        if not isinstance(error, WebSocketDisconnected):  # the client left: nothing to report
            await super().handle_task_exception(error)

    async def shutdown(self) -> None:
        try:
            await super().shutdown()
        finally:
            if self._expiry is not None:
                self._expiry.cancel()
            if self._admitted and self.principal is not None:
                self.hub.leave(self.principal.user_id)
                self._admitted = False


async def _refusals_first(results: Any) -> AsyncGenerator[Any, None]:
    """The operation's results, its first one marked as a refusal when it is an error before
    any field ran (no data, no path): Strawberry's stream ignores the result `RequestGuard`
    sets for a subscription, so the guard raises, and the protocol answers `error`, not
    `next`, for an operation that never started."""
    first = True
    async for result in results:
        if (
            first
            and not isinstance(result, PreExecutionError)
            and result.data is None
            and result.errors
            and not any(error.path for error in result.errors)
        ):
            result = PreExecutionError(data=None, errors=result.errors)
        first = False
        yield result
