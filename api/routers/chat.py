"""``POST /v1/chat/completions``: OpenAI's schema, streaming by SSE, with citations."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from api.deps import AnswererDep, PrincipalDep
from inference.models import ChatCompletionRequest

router = APIRouter(tags=["chat"])


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(
    body: ChatCompletionRequest,
    principal: PrincipalDep,
    answerer: AnswererDep,
    request: Request,
    response: Response,
) -> dict[str, Any] | StreamingResponse:
    prepared = await answerer.prepare(principal, body)
    route = prepared.route
    route_header = f"{route.tier}; model={route.backend.model}; reason={route.reason}"
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(
            answerer.stream_sse(prepared, include_usage=include_usage),
            media_type="text/event-stream",
            headers={
                "x-headwater-route": route_header,
                "x-request-id": request.state.request_id,
                "cache-control": "no-cache",
            },
        )
    response.headers["x-headwater-route"] = route_header
    return await answerer.complete(prepared)
