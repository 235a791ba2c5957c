"""``POST /v1/chat/completions``: OpenAI's schema, streaming by SSE, with citations.

Every answered request leaves one audit record. A non-streamed answer is returned only
once its record is acknowledged (unless ``HEADWATER_AUDIT_SYNC=false``: then the record
is queued before the answer leaves); a stream's record follows its last event, or the
client's departure. A client that goes away cancels the upstream request (streamed or
not).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Request, Response
from starlette.types import Receive

from acl.models import Principal
from api.answering import PreparedAnswer
from api.audit import AuditLog, AuditRecord
from api.deps import AnswererDep, AuditDep, RateLimitedPrincipalDep, ServicesDep
from api.streaming import ClosingStreamingResponse
from core.errors import HeadwaterError
from inference.models import ChatCompletionRequest

router = APIRouter(tags=["chat"])
_log = logging.getLogger(__name__)
T = TypeVar("T")


class ClientDisconnected(Exception):
    """The caller closed the connection before the answer was ready."""


def _record(
    principal: Principal, prepared: PreparedAnswer, request_id: str, started: float
) -> AuditRecord:
    decision = prepared.route.decision
    return AuditRecord.for_principal(
        principal,
        request_id=request_id,
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
        latency_ms=round((time.perf_counter() - started) * 1000, 1),
    )


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
            # The client left mid-stream: what it was sent is still audited (queued
            # here; a closed generator cannot wait for the acknowledgement).
            audit.submit(record()).add_done_callback(_log_unacknowledged)


def _log_unacknowledged(pending: asyncio.Future[Any]) -> None:
    if not pending.cancelled() and pending.exception() is not None:
        _log.error("an audit record was not acknowledged: %s", pending.exception())


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """``work``, cancelled (with the upstream request it makes) if the client leaves."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_until_disconnect(request.receive))
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        raise ClientDisconnected
    return task.result()


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(
    body: ChatCompletionRequest,
    principal: RateLimitedPrincipalDep,
    answerer: AnswererDep,
    audit: AuditDep,
    request: Request,
    services: ServicesDep,
) -> ClosingStreamingResponse | Response:
    started = time.perf_counter()
    audit_sync = services.settings.audit_sync
    request_id: str = request.state.request_id
    prepared = await answerer.prepare(principal, body)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        upstream = await answerer.open_stream(prepared)
        events = answerer.stream_sse(prepared, upstream, include_usage=include_usage)
        return ClosingStreamingResponse(
            _audited(events, audit, lambda: _record(principal, prepared, request_id, started)),
            media_type="text/event-stream",
            headers={
                "x-headwater-route": prepared.route_header(),
                "x-request-id": request_id,
                "cache-control": "no-cache",
            },
        )
    try:
        answer = await _unless_disconnected(request, answerer.complete(prepared))
    except ClientDisconnected:
        _log.info("client disconnected; upstream request %s cancelled", request_id)
        return Response(status_code=499)
    pending = audit.submit(_record(principal, prepared, request_id, started))
    if audit_sync:
        await pending
    else:
        pending.add_done_callback(_log_unacknowledged)
    # Serialised here (not by FastAPI's encoder, which walks every value again).
    return Response(
        json.dumps(answer, separators=(",", ":"), ensure_ascii=False),
        media_type="application/json",
        headers={"x-headwater-route": prepared.route_header()},
    )
