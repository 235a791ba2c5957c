"""Generation on a routed backend, traced as a GenAI ``chat {model}`` client span."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from opentelemetry import trace

from inference.router import Route
from inference.vllm import JSON

_tracer = trace.get_tracer("headwater.inference")


def _start_chat_span(route: Route, body: JSON) -> trace.Span:
    span = _tracer.start_span(f"chat {route.backend.model}", kind=trace.SpanKind.CLIENT)
    span.set_attribute("gen_ai.operation.name", "chat")
    span.set_attribute("gen_ai.provider.name", "vllm")
    span.set_attribute("gen_ai.request.model", route.backend.model)
    span.set_attribute("server.address", route.backend.base_url)
    span.set_attribute("headwater.route.tier", route.tier)
    for key in ("max_tokens", "temperature", "top_p", "seed"):
        if body.get(key) is not None:
            span.set_attribute(f"gen_ai.request.{key}", body[key])
    return span


def _record_usage(span: trace.Span, usage: dict[str, Any] | None, model: str | None) -> None:
    if model:
        span.set_attribute("gen_ai.response.model", model)
    if usage:
        span.set_attribute("gen_ai.usage.input_tokens", int(usage.get("prompt_tokens", 0)))
        span.set_attribute("gen_ai.usage.output_tokens", int(usage.get("completion_tokens", 0)))


class ChatService:
    """Sends a prepared OpenAI request body to the routed backend."""

    async def complete(self, route: Route, body: JSON) -> JSON:
        span = _start_chat_span(route, body)
        try:
            with trace.use_span(span, end_on_exit=False, record_exception=True):
                result = await route.backend.complete({**body, "model": route.backend.model})
            _record_usage(span, result.get("usage"), result.get("model"))
            return result
        except Exception as exc:
            span.set_status(trace.Status(trace.StatusCode.ERROR, type(exc).__name__))
            span.set_attribute("error.type", type(exc).__name__)
            raise
        finally:
            span.end()

    def stream(self, route: Route, body: JSON) -> AsyncIterator[JSON]:
        """Upstream chunks as they come; the last one carries ``usage``.

        The span starts here, in the caller's context, not when iteration begins.
        """
        span = _start_chat_span(route, body)
        upstream = {
            **body,
            "model": route.backend.model,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        return self._relay(span, route, upstream)

    async def _relay(self, span: trace.Span, route: Route, body: JSON) -> AsyncIterator[JSON]:
        started = time.perf_counter()
        first = True
        try:
            async for chunk in route.backend.stream(body):
                if first:
                    first = False
                    span.set_attribute(
                        "gen_ai.response.time_to_first_chunk",
                        round(time.perf_counter() - started, 4),
                    )
                if chunk.get("usage"):
                    _record_usage(span, chunk["usage"], chunk.get("model"))
                yield chunk
        except Exception as exc:
            span.set_status(trace.Status(trace.StatusCode.ERROR, type(exc).__name__))
            span.set_attribute("error.type", type(exc).__name__)
            span.record_exception(exc)
            raise
        finally:
            span.end()
