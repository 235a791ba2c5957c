"""``POST /v1/chat/completions``: OpenAI's schema, streaming by SSE, with citations.

Every answered request leaves one audit record (``api.audit``): a non-streamed answer's
is queued as the answer is sent (or, with ``HEADWATER_AUDIT_SYNC=true``, acknowledged by
Kafka before it is sent); a stream's record follows its last event, or the client's
departure. A client that goes away cancels the upstream request (streamed or not).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Request, Response
from starlette.types import Receive, Scope, Send

from acl.models import Principal
from api.audit import AuditLog, AuditRecord
from api.chat.prepared import PreparedAnswer
from api.chat.protocol import ChatCompletionRequest, refuse_tools
from api.chat.streaming import ClosingStreamingResponse
from api.cost import as_currency
from api.deps import AnswererDep, AuditDep, PrincipalDep
from core.errors import HeadwaterError

CHAT_PATH = "/v1/chat/completions"
router = APIRouter(tags=["chat"])
_log = logging.getLogger(__name__)
T = TypeVar("T")


class ClientDisconnected(Exception):
    """The caller closed the connection before the answer was ready."""


def _record(
    principal: Principal, prepared: PreparedAnswer, request: Request, started: float
) -> AuditRecord:
    decision = prepared.route.decision
    return AuditRecord.for_principal(
        principal,
        request_id=request.state.request_id,
        client_request_id=getattr(request.state, "client_request_id", None),
        endpoint="chat",
        chunks=prepared.chunks,
        route_tier=prepared.route.tier,
        model=prepared.model,
        route_reason=prepared.route.reason,
        route_score=round(decision.score, 4) if decision else None,
        route_threshold=round(decision.threshold, 4) if decision else None,
        served_tier=prepared.served.tier if prepared.served else None,
        firewall=dict(prepared.findings),
        prompt_tokens=prepared.usage.get("prompt_tokens", 0),
        completion_tokens=prepared.usage.get("completion_tokens", 0),
        cost=as_currency(prepared.cost_nanos),
        gpu_seconds=round(prepared.gpu_seconds, 6),
        cache=prepared.cache_outcome,
        latency_ms=round((time.perf_counter() - started) * 1000, 1),
    )


def _no_cache(request: Request) -> bool:
    """``Cache-Control: no-cache`` (or ``no-store``): the client wants a fresh answer."""
    directives = request.headers.get("cache-control", "").lower()
    return "no-cache" in directives or "no-store" in directives


async def _audited(
    events: AsyncGenerator[str], audit: AuditLog, record: Callable[[], AuditRecord]
) -> AsyncIterator[str]:
    finished = False
    try:
        async for event in events:
            yield event
        finished = True
        await audit.write(record())
    except HeadwaterError:
        _log.exception("the audit record of a streamed answer could not be written")
    finally:
        await events.aclose()  # a client that left: closes the upstream request, vLLM stops
        if not finished:
            # The client left mid-stream: what it was sent is still audited (queued: a
            # closed generator cannot wait for the acknowledgement).
            audit.queue(record())


async def _unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """``work``, cancelled (with the upstream request it makes) if the client leaves.

    ``work`` runs in this task; a watcher task cancels this one when the client's
    disconnect arrives. (Running ``work`` in a task of its own would cost two extra turns
    of the event loop per request.)"""
    current = asyncio.current_task()
    assert current is not None
    left = False

    async def watch() -> None:
        nonlocal left
        while (await request.receive())["type"] != "http.disconnect":
            pass
        left = True
        current.cancel()

    watcher = asyncio.ensure_future(watch())
    try:
        return await work
    except asyncio.CancelledError:
        if left and current.uncancel() == 0:
            raise ClientDisconnected from None
        raise  # cancelled from elsewhere (a shutdown): not ours to swallow
    finally:
        watcher.cancel()


# Served through ``api.chat.front_door`` (this handler and these dependencies, without
# FastAPI's layers on the gateway's hot path); registered here for its schema.
@router.post(CHAT_PATH, response_model=None)
async def chat_completions(
    body: ChatCompletionRequest,
    principal: PrincipalDep,
    answerer: AnswererDep,
    audit: AuditDep,
    request: Request,
) -> ClosingStreamingResponse | Response:
    started = time.perf_counter()
    request_id: str = request.state.request_id
    refuse_tools(body)
    prepared = await answerer.prepare(principal, body, fresh=_no_cache(request))
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        upstream = await answerer.open_stream(prepared)
        events = answerer.stream_sse(prepared, upstream, include_usage=include_usage)
        return ClosingStreamingResponse(
            _audited(events, audit, lambda: _record(principal, prepared, request, started)),
            media_type="text/event-stream",
            headers={
                "x-headwater-route": prepared.route_header(),
                "cache-control": "no-cache",
            },
        )
    try:
        answer = await _unless_disconnected(request, answerer.complete(prepared))
    except ClientDisconnected:
        _log.info("client disconnected; upstream request %s cancelled", request_id)
        return Response(status_code=499)
    record = _record(principal, prepared, request, started)
    if audit.acknowledged:
        await audit.write(record)
    # Serialised here (not by FastAPI's encoder, which walks every value again).
    return AuditedResponse(
        json.dumps(answer, separators=(",", ":"), ensure_ascii=False),
        media_type="application/json",
        headers={"x-headwater-route": prepared.route_header()},
        audit=None if audit.acknowledged else (audit, record),
    )


class AuditedResponse(Response):
    """A response that queues its audit record once it has been sent, or failed to be:
    the producer's work (a wake-up of its I/O thread) then never delays the answer."""

    def __init__(self, *args: Any, audit: tuple[AuditLog, AuditRecord] | None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._audit = audit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self._audit is not None:
                log, record = self._audit
                log.queue(record)
