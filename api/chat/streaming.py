"""The SSE relay of a chat stream: upstream chunks with their content redacted by the
output firewall (also across chunks), a chunk with the citations, the usage chunk last
when asked for, ``[DONE]``. Text never leaves through spans or logs."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator

from opentelemetry import trace
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from api.chat.prepared import PreparedAnswer
from api.errors import error_body
from core.errors import HeadwaterError
from inference.firewall import StreamRedactor, record
from inference.service import UpstreamStream
from inference.vllm import JSON

_log = logging.getLogger(__name__)
_tracer = trace.get_tracer("headwater.api")


class ClosingStreamingResponse(StreamingResponse):
    """A streaming response that closes its body generator however the response ends.

    Starlette stops iterating when the client leaves (a cancelled task under ASGI 2.3, a
    failed send under 2.4) but leaves the generator suspended until the garbage collector
    finds it, and the upstream request it holds keeps vLLM generating for nobody. Closing
    it here runs its ``finally`` blocks at once: the upstream connection closes and vLLM
    aborts the request.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()


async def relay_sse(
    prepared: PreparedAnswer,
    upstream: UpstreamStream | AsyncGenerator[JSON],
    redactor: StreamRedactor,
    *,
    include_usage: bool,
) -> AsyncGenerator[str]:
    """Server-sent events: upstream chunks with redacted content, a chunk with the
    citations, the usage chunk when asked for (last, as OpenAI sends it), ``[DONE]``.

    A failure mid-stream sends one error event, then ``[DONE]``.
    """
    last: JSON = {}
    usage_chunk: JSON | None = None
    answer: list[str] = []  # what the client was sent: the citations it used
    finish: str | None = None
    # Not the current span: a generator's frames must not attach contexts across yields.
    guard = _tracer.start_span("guardrail output")
    try:
        async for chunk in upstream:
            last = chunk
            prepared.meter(chunk.get("usage"))
            if not chunk.get("choices"):
                if chunk.get("usage"):
                    usage_chunk = chunk
                continue
            chunk.pop("usage", None)
            finish = chunk["choices"][0].get("finish_reason") or finish
            if _redact_chunk(chunk, redactor):
                answer.extend(_contents(chunk))
                yield _sse(chunk)
            if redactor.blocked:
                await upstream.aclose()  # stop generating: nothing more may be shown
                break
        with trace.use_span(guard):
            record("output", redactor.findings, prepared.policy, redactor.action)
        prepared.note("output", redactor.findings)
        prepared.sent = "".join(answer)
        prepared.finish_reason = "content_filter" if redactor.blocked else finish
        yield _sse(
            {
                "id": last.get("id"),
                "object": "chat.completion.chunk",
                "created": last.get("created"),
                "model": last.get("model"),
                "choices": [],
                "headwater": prepared.extension("".join(answer)),
            }
        )
        if include_usage and usage_chunk is not None:
            yield _sse(usage_chunk)
    except HeadwaterError as exc:
        yield _sse(
            error_body(exc.message, error_type=exc.error_type, param=exc.param, code=exc.code)
        )
    except Exception:
        _log.exception("chat stream failed after it started")
        yield _sse(error_body("internal server error", error_type="server_error"))
    finally:
        guard.end()
        await upstream.aclose()
    yield "data: [DONE]\n\n"


def _redact_chunk(chunk: JSON, redactor: StreamRedactor) -> bool:
    """Redact the content deltas in place (n=1: one choice); False when nothing is left
    to send in this chunk."""
    keep = False
    for choice in chunk["choices"]:
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            delta = choice["delta"] = {}
        content = delta.get("content")
        finished = choice.get("finish_reason") is not None
        if isinstance(content, str) or finished:
            released = redactor.feed(content or "")
            if finished:
                released += redactor.flush()
            if redactor.blocked:
                choice["finish_reason"] = "content_filter"
                released = ""
            if isinstance(content, str) or released:
                delta["content"] = released
        keep = keep or bool(delta.get("content")) or bool(delta.get("role"))
        keep = keep or choice.get("finish_reason") is not None or bool(delta.get("tool_calls"))
    return keep


def _contents(chunk: JSON) -> list[str]:
    deltas = (choice.get("delta") or {} for choice in chunk["choices"])
    return [delta["content"] for delta in deltas if isinstance(delta.get("content"), str)]


def _sse(payload: JSON) -> str:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"
