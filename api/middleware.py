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

from core.metrics import HTTP_REQUEST_DURATION

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_UNTIMED = frozenset({"/metrics"})
# Request ids must be unique, not secret: 128 bits from a generator seeded by the OS once.
# uuid4 asks the OS for every id, and that call lets other threads take the GIL from the
# request in flight.
_ids = random.Random()


def new_request_id() -> str:
    return f"{_ids.getrandbits(128):032x}"


def request_id_header(scope: Scope) -> tuple[bytes, bytes]:
    """The request's id (a sane incoming ``x-request-id`` is kept, so a caller can
    correlate), stored as ``request.state.request_id``; returns its response header."""
    incoming = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"")
    request_id = incoming.decode("latin-1")
    if not _REQUEST_ID.match(request_id):
        request_id = new_request_id()
    scope.setdefault("state", {})["request_id"] = request_id
    return (b"x-request-id", request_id.encode())


def record_latency(scope: Scope, route: str, status: int, started: float) -> None:
    """Latency by route template (never the raw path: ids would explode the label set)."""
    if route not in _UNTIMED:
        HTTP_REQUEST_DURATION.labels(scope["method"], route, str(status)).observe(
            time.perf_counter() - started
        )


class StampedSend:
    """``send``, with the request's id header added to the response; keeps its status."""

    def __init__(self, send: Send, id_header: tuple[bytes, bytes]):
        self._send = send
        self._id_header = id_header
        self.status = 500  # until a response starts

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            headers = message.get("headers", ())
            message["headers"] = [
                *(h for h in headers if h[0] != b"x-request-id"),
                self._id_header,
            ]
        await self._send(message)


class RequestMiddleware:
    """Gives every request an id, echoes it on the response, and records the request's
    latency by route template."""

    def __init__(self, app: ASGIApp):
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        stamped = StampedSend(send, request_id_header(scope))
        try:
            await self._app(scope, receive, stamped)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            record_latency(scope, route, stamped.status, started)
