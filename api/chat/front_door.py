"""The gateway's hot path: ``POST /v1/chat/completions`` handed straight to its handler.

The endpoint is the FastAPI route in ``api.chat.router`` (its schema, its OpenAPI entry,
its handler, its dependency functions). Through FastAPI that route sits under ten ASGI
layers (telemetry, error and body-limit wrappers, exception and exit-stack middleware,
the router) and a generic dependency solver; at concurrency 1 on the 2-core benchmark
machine they cost ~0.7 ms of the gateway's 2 ms overhead budget (BENCHMARKS.md).
``ChatFrontDoor`` takes that one route before them and does the same steps by hand, in
one frame: the request id and latency metric (``api.middleware``'s), the server span
(OpenTelemetry's HTTP semantic conventions, continuing the caller's W3C trace context,
as FastAPI names its own), authentication and rate limit, validation against the
route's model, the route's handler, and errors through the app's own exception
handlers, so the error shape, status codes and headers are the route's.
"""

from __future__ import annotations

import inspect
import time

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from opentelemetry import context, propagate, trace
from pydantic import ValidationError
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from api.body_limit import BodyLimit
from api.chat.protocol import ChatCompletionRequest
from api.chat.router import CHAT_PATH, chat_completions
from api.deps import get_answerer, get_audit, get_principal
from api.middleware import StampedSend, record_latency, request_id_headers

_SPAN_NAME = f"POST {CHAT_PATH}"
_tracer = trace.get_tracer("headwater.api")


class ChatFrontDoor:
    """Serves ``POST /v1/chat/completions`` for ``api`` (see the module docstring)."""

    def __init__(self, api: FastAPI, *, body_limit: BodyLimit):
        self._api = api
        self._body_limit = body_limit

    @staticmethod
    def handles(scope: Scope) -> bool:
        return bool(
            scope["type"] == "http" and scope["path"] == CHAT_PATH and scope["method"] == "POST"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        scope["app"] = self._api  # as Starlette sets it: request.app reaches the services
        stamped = StampedSend(send, request_id_headers(scope))
        span = _server_span(scope)
        token = context.attach(trace.set_span_in_context(span))
        try:
            await self._serve(scope, self._body_limit.counted(scope, receive), stamped)
        finally:
            status = stamped.status
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_attribute("error.type", str(status))
                span.set_status(trace.StatusCode.ERROR)
            span.end()
            context.detach(token)
            record_latency(scope, CHAT_PATH, status, started)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Starlette keeps the body it read; later receives wait for the client's
        # disconnect, which the handler watches to cancel upstream work.
        request = Request(scope, receive)
        try:
            # FastAPI's order: a body that is not JSON fails before the dependencies run
            # (authentication included); a JSON body that fails validation, after them.
            raw = await request.body()
            parsed = _parsed(raw)
            if isinstance(parsed, ValidationError) and _not_json(parsed):
                raise _request_error(parsed, raw)
            principal = await get_principal(request)
            if isinstance(parsed, ValidationError):
                raise _request_error(parsed, raw)
            body = parsed
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


def _server_span(scope: Scope) -> trace.Span:
    """The HTTP server span, a child of the caller's ``traceparent`` when it sent one."""
    carrier = {
        key.decode("latin-1"): value.decode("latin-1")
        for key, value in scope["headers"]
        if key in (b"traceparent", b"tracestate")
    }
    attributes: dict[str, str | int] = {
        "http.request.method": "POST",
        "http.route": CHAT_PATH,
        "url.path": CHAT_PATH,
        "url.scheme": scope.get("scheme", "http"),
        "network.protocol.version": scope.get("http_version", "1.1"),
    }
    server = scope.get("server")
    if server:
        attributes["server.address"] = server[0]
        if server[1] is not None:
            attributes["server.port"] = server[1]
    return _tracer.start_span(
        _SPAN_NAME,
        context=propagate.extract(carrier) if carrier else None,
        kind=trace.SpanKind.SERVER,
        attributes=attributes,
    )


def _parsed(raw: bytes) -> ChatCompletionRequest | ValidationError:
    """The body as the route's model, or why it is not one (parsed once)."""
    try:
        return ChatCompletionRequest.model_validate_json(raw)
    except ValidationError as exc:
        return exc


def _not_json(exc: ValidationError) -> bool:
    return any(error["type"] == "json_invalid" for error in exc.errors())


def _request_error(exc: ValidationError, raw: bytes) -> RequestValidationError:
    """The error FastAPI raises for the same body (its locations start at ``body``)."""
    errors = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
    return RequestValidationError(errors, body=raw)
