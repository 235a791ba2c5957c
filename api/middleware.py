"""The one ASGI middleware of ours around every request: its id and its latency metric
(``api.chat.front_door`` does the same for the chat route, with these functions).

One layer, not two: each ASGI layer wraps ``send`` again, and every wrapper is paid twice
per request (start and body).
"""

from __future__ import annotations

import random
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.body_limit import BodyLimit
from core.metrics import HTTP_REQUEST_DURATION

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_UNTIMED = frozenset({"/metrics"})
_ID_HEADER_NAMES = frozenset({b"x-request-id", b"x-client-request-id"})
# Request ids must be unique, not secret: 128 bits from a generator seeded by the OS once.
# uuid4 asks the OS for every id, and that call lets other threads take the GIL from the
# request in flight.
_ids = random.Random()


def new_request_id() -> str:
    return f"{_ids.getrandbits(128):032x}"


IdHeaders = tuple[tuple[bytes, bytes], ...]


def request_id_headers(scope: Scope) -> IdHeaders:
    """The request's id, always the server's own (``request.state.request_id``): audit
    and metering count requests by it, so a client could otherwise have many requests
    billed once by sending one id. A sane incoming ``x-request-id`` is kept as
    ``request.state.client_request_id`` for the caller to correlate, and echoed back as
    ``x-client-request-id``. Returns the response headers."""
    request_id = new_request_id()
    state = scope.setdefault("state", {})
    state["request_id"] = request_id
    incoming = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"")
    client_id = incoming.decode("latin-1")
    if not _REQUEST_ID.match(client_id):
        return ((b"x-request-id", request_id.encode()),)
    state["client_request_id"] = client_id
    return ((b"x-request-id", request_id.encode()), (b"x-client-request-id", incoming))


def record_latency(scope: Scope, route: str, status: int, started: float) -> None:
    """Latency by route template (never the raw path: ids would explode the label set)."""
    if route not in _UNTIMED:
        HTTP_REQUEST_DURATION.labels(scope["method"], route, str(status)).observe(
            time.perf_counter() - started
        )


class StampedSend:
    """``send``, with the request's id headers added to the response; keeps its status."""

    def __init__(self, send: Send, id_headers: IdHeaders):
        self._send = send
        self._id_headers = id_headers
        self.status = 500  # until a response starts

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            headers = message.get("headers", ())
            message["headers"] = [
                *(h for h in headers if h[0] not in _ID_HEADER_NAMES),
                *self._id_headers,
            ]
        await self._send(message)


class RequestMiddleware:
    """Gives every request an id, echoes it on the response, refuses a body over its cap
    (``api.body_limit``), and records the request's latency by route template."""

    def __init__(self, app: ASGIApp, *, body_limit: BodyLimit):
        self._app = app
        self._body_limit = body_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        stamped = StampedSend(send, request_id_headers(scope))
        try:
            await self._app(scope, self._body_limit.counted(scope, receive), stamped)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            record_latency(scope, route, stamped.status, started)
