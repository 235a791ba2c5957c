"""``POST /v1/chat/completions``: OpenAI's schema, streaming by SSE, with citations.

Every answered request leaves one audit record. A non-streamed answer is returned only
once its record is acknowledged; a stream's record follows its last event.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from acl.models import Principal
from api.answering import PreparedAnswer
from api.audit import AuditLog, AuditRecord
from api.deps import AnswererDep, AuditDep, PrincipalDep
from core.errors import HeadwaterError
from inference.models import ChatCompletionRequest

router = APIRouter(tags=["chat"])
_log = logging.getLogger(__name__)


def _record(
    principal: Principal, prepared: PreparedAnswer, request_id: str, started: float
) -> AuditRecord:
    return AuditRecord.for_principal(
        principal,
        request_id=request_id,
        endpoint="chat",
        chunks=prepared.served,
        route_tier=prepared.route.tier,
        model=prepared.route.backend.model,
        route_reason=prepared.route.reason,
        prompt_tokens=prepared.usage.get("prompt_tokens", 0),
        completion_tokens=prepared.usage.get("completion_tokens", 0),
        latency_ms=round((time.perf_counter() - started) * 1000, 1),
    )


async def _audited(
    events: AsyncIterator[str], audit: AuditLog, record: Callable[[], AuditRecord]
) -> AsyncIterator[str]:
    async for event in events:
        yield event
    try:
        await audit.write(record())
    except HeadwaterError:
        _log.exception("the audit record of a streamed answer could not be written")


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(
    body: ChatCompletionRequest,
    principal: PrincipalDep,
    answerer: AnswererDep,
    audit: AuditDep,
    request: Request,
    response: Response,
) -> dict[str, Any] | StreamingResponse:
    started = time.perf_counter()
    request_id: str = request.state.request_id
    prepared = await answerer.prepare(principal, body)
    route = prepared.route
    route_header = f"{route.tier}; model={route.backend.model}; reason={route.reason}"
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        events = answerer.stream_sse(prepared, include_usage=include_usage)
        return StreamingResponse(
            _audited(events, audit, lambda: _record(principal, prepared, request_id, started)),
            media_type="text/event-stream",
            headers={
                "x-headwater-route": route_header,
                "x-request-id": request_id,
                "cache-control": "no-cache",
            },
        )
    response.headers["x-headwater-route"] = route_header
    answer = await answerer.complete(prepared)
    await audit.write(_record(principal, prepared, request_id, started))
    return answer
