"""``create_app``: the FastAPI application with its lifespan, routers and error shape."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from api.body_limit import BodyLimit
from api.chat import router as chat_route
from api.chat.front_door import ChatFrontDoor
from api.console import router as console
from api.errors import register_error_handlers
from api.middleware import RequestMiddleware
from api.openapi import truthful_openapi
from api.operations import router as operations
from api.routers import admin, documents, health, search, usage
from api.services import Services
from core.settings import Settings
from core.telemetry import configure_tracing

_UNTRACED = frozenset({"/healthz", "/readyz", "/metrics"})


def _untraced(scope: Scope) -> bool:
    """Probes and scrapes make no spans."""
    return scope.get("path") in _UNTRACED


class HeadwaterAPI(FastAPI):
    """FastAPI, with ``POST /v1/chat/completions`` taken before its layers by
    ``api.chat.front_door`` (the gateway's hot path; the route's own handler serves it)."""

    chat_front_door: ChatFrontDoor | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        door = self.chat_front_door
        if door is not None and door.handles(scope):
            await door(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


ServicesFactory = Callable[[], AbstractAsyncContextManager[Services]]


def create_app(settings: Settings, *, open_services: ServicesFactory) -> HeadwaterAPI:
    """The API over the services ``open_services`` opens in the lifespan (the composition
    root, ``headwater.processes``, decides what else the process runs)."""
    provider = configure_tracing(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_services() as services:
            app.state.services = services
            # Everything loaded so far (the embedding model, torch, the firewall's
            # recognizers: ~600k objects) lives as long as the process. Frozen, the cyclic
            # GC stops walking it on every full collection, which under load took a third
            # of the gateway's CPU (BENCHMARKS.md).
            gc.freeze()
            yield

    app = HeadwaterAPI(
        # FastAPI's own OpenTelemetry server spans (semantic conventions, the W3C context
        # of the caller continued), at about a third of the CPU of opentelemetry's ASGI
        # instrumentor; Prometheus, not OTel metrics, serves /metrics.
        telemetry={
            "tracer_provider": provider,
            "metrics": False,
            "logs": False,
            "operation_spans": False,
            "exclude": _untraced,
        },
        title="Headwater",
        version="0.1.0",
        summary="Permission-safe answers from your organisation's live documents.",
        lifespan=lifespan,
    )
    register_error_handlers(app)
    app.include_router(chat_route.router)
    app.include_router(search.router)
    app.include_router(documents.router)
    app.include_router(admin.router)
    app.include_router(usage.router)
    app.include_router(health.router)
    app.include_router(operations.router)
    app.include_router(console.router)
    app.mount("/console/static", console.static, name="console-static")
    body_limit = BodyLimit(
        request_bytes=settings.max_request_bytes, document_bytes=settings.max_document_bytes
    )
    app.add_middleware(RequestMiddleware, body_limit=body_limit)
    app.chat_front_door = ChatFrontDoor(app, body_limit=body_limit)
    app.openapi = lambda: truthful_openapi(app)  # type: ignore[method-assign]
    return app
