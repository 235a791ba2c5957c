"""The gateway's hot path: ``POST /v1/chat/completions`` handed straight to its handler.

The endpoint is the FastAPI route in ``api.routers.chat`` (its schema, its OpenAPI entry,
its handler). FastAPI's router would reach it through exception, exit-stack and routing
layers and a generic dependency solver; on a 2-core machine that machinery cost ~0.5 ms
of the gateway's 2 ms overhead budget at concurrency 1 (BENCHMARKS.md). This middleware
does the same steps by hand for that one route: read the body, authenticate and
rate-limit (the route's own dependency functions), validate the body against the route's
model, call the route's handler, and answer errors through the app's own exception
handlers, so the error shape, status codes and headers are the route's.

Everything outside it still applies: FastAPI's server span (named for the route here),
the request id and latency metric (``api.middleware``), the body-size limit.
"""

from __future__ import annotations

import inspect

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from opentelemetry import trace
from pydantic import ValidationError
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import get_answerer, get_audit, get_rate_limited_principal
from api.routers.chat import CHAT_PATH, chat_completions
from inference.models import ChatCompletionRequest

_SPAN_NAME = f"POST {CHAT_PATH}"


class ChatDispatch:
    """Serves ``POST /v1/chat/completions`` with the route's handler; passes the rest on."""

    def __init__(self, app: ASGIApp, *, api: FastAPI):
        self._app = app
        self._api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != CHAT_PATH or scope["method"] != "POST":
            await self._app(scope, receive, send)
            return
        span = trace.get_current_span()  # the server span, until now named "POST"
        span.update_name(_SPAN_NAME)
        span.set_attribute("http.route", CHAT_PATH)
        scope["route_path"] = CHAT_PATH  # the latency metric's label (api.middleware)
        raw = await _read_body(receive)
        request = Request(scope, _replaying(raw, receive))
        try:
            principal = await get_rate_limited_principal(request)
            body = _validated(raw)
            response = await chat_completions(
                body=body,
                principal=principal,
                answerer=await get_answerer(request),
                audit=await get_audit(request),
                request=request,
            )
        except Exception as exc:  # noqa: BLE001 - answered by the app's own handlers
            response = await self._error_response(request, exc)
        await response(scope, request.receive, send)

    async def _error_response(self, request: Request, exc: Exception) -> Response:
        """The response the app's exception handlers give ``exc`` (as for any route)."""
        handlers = self._api.exception_handlers
        handler = next((handlers[cls] for cls in type(exc).__mro__ if cls in handlers), None)
        if handler is None:
            raise exc
        response = handler(request, exc)
        return await response if inspect.isawaitable(response) else response


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replaying(raw: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the body once more, then waits for the client's
    disconnect as the original does (the handler watches it to cancel upstream work)."""
    pending: list[Message] = [{"type": "http.request", "body": raw, "more_body": False}]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


def _validated(raw: bytes) -> ChatCompletionRequest:
    """The body as the route's model; a bad body fails as FastAPI's validation does."""
    try:
        return ChatCompletionRequest.model_validate_json(raw)
    except ValidationError as exc:
        errors = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        raise RequestValidationError(errors, body=raw) from None
