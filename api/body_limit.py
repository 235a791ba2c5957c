"""Request body caps, enforced before any heavy work: 413 in the error shape.

A body's cost is paid before the route sees it (JSON parsing, validation, the firewall
over every message): a 2.4 MB chat body took ~2.7 s of CPU before it was refused as too
long for the model. So the cap is checked first, on the declared ``Content-Length``
(refused before a byte of the body is read, and before authentication: both the
FastAPI routes and the chat front door read the body first), and again while a body
without one (chunked) is read.

Document ingest (``POST /v1/documents``) carries whole documents: it has its own cap.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import Message, Receive, Scope

DOCUMENTS_PATH = "/v1/documents"


class BodyTooLarge(HTTPException):
    """A request body over its route's cap (raised while it is read)."""

    code = "request_too_large"

    def __init__(self, limit_bytes: int):
        super().__init__(413, detail=f"the request body is over the {limit_bytes}-byte limit")


class BodyLimit:
    """The caps, per route: ``document_bytes`` for document ingest, ``request_bytes`` for
    every other request."""

    def __init__(self, *, request_bytes: int, document_bytes: int):
        self._request_bytes = request_bytes
        self._document_bytes = document_bytes

    def limit_for(self, scope: Scope) -> int:
        if scope["path"] == DOCUMENTS_PATH and scope["method"] == "POST":
            return self._document_bytes
        return self._request_bytes

    def counted(self, scope: Scope, receive: Receive) -> Receive:
        """``receive``, raising ``BodyTooLarge`` at the first read when the declared
        ``Content-Length`` is over the cap (no byte of it is read), else once the body
        read passes it. Raised inside the route's own body read, it is answered by the
        app's error handlers, on the route (its span, its status)."""
        limit = self.limit_for(scope)
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), b"")
        seen = int(declared) if declared.isdigit() and int(declared) > limit else 0

        async def receive_counted() -> Message:
            nonlocal seen
            if seen > limit:
                raise BodyTooLarge(limit)
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        return receive_counted
