"""``create_app``: the FastAPI application with its lifespan, routers and error shape."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import register_error_handlers
from api.routers import admin, chat, documents, health, search, usage
from api.services import open_services
from core.metrics import HTTP_REQUEST_DURATION
from core.settings import Settings
from core.telemetry import configure_tracing

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


class RequestIdMiddleware:
    """Gives every request an id (a sane incoming ``x-request-id`` is kept) and echoes it."""

    def __init__(self, app: ASGIApp):
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"x-request-id"]
                message["headers"] = [*headers, (b"x-request-id", request_id.encode())]
            await send(message)

        await self._app(scope, receive, send_with_id)


class MetricsMiddleware:
    """Request latency by route template (never the raw path: ids would explode labels)."""

    def __init__(self, app: ASGIApp):
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self._app(scope, receive, send_with_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            if route != "/metrics":
                HTTP_REQUEST_DURATION.labels(scope["method"], route, str(status)).observe(
                    time.perf_counter() - started
                )


def create_app(settings: Settings, *, run_ingest: bool = True) -> FastAPI:
    """The API; with ``run_ingest`` the same process also runs the ingest worker
    (required with the embedded store, which belongs to one process)."""
    provider = configure_tracing(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_services(settings, run_ingest=run_ingest) as services:
            app.state.services = services
            yield

    app = FastAPI(
        title="Headwater",
        version="0.1.0",
        summary="Permission-safe answers from your organisation's live documents.",
        lifespan=lifespan,
    )
    register_error_handlers(app)
    app.include_router(chat.router)
    app.include_router(search.router)
    app.include_router(documents.router)
    app.include_router(admin.router)
    app.include_router(usage.router)
    app.include_router(health.router)
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(MetricsMiddleware)
    # No span per ASGI send/receive message: a stream would make one per chunk.
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=provider,
        excluded_urls="healthz,readyz,metrics",
        exclude_spans=["send", "receive"],
    )
    return app
