"""Generation on a tier's replicas: least-outstanding choice, a retry on another replica
(then the other tier) before the first token, each attempt traced as a GenAI
``chat {model}`` client span."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace

from core.errors import UpstreamUnavailable
from core.metrics import LLM_ATTEMPTS
from inference.pool import BackendPools, Replica, Tier, TierPool
from inference.vllm import JSON, UpstreamFailed

_tracer = trace.get_tracer("headwater.inference")


@dataclass(frozen=True)
class Served:
    """What actually served a request (may differ from the route after a fallback)."""

    tier: Tier
    model: str
    backend: str
    attempts: int
    busy_s: float = 0.0  # its share of the replica's busy time (inference.busy), if done

    def fell_back(self, routed: Tier) -> bool:
        return self.tier != routed


def _chat_span(replica: Replica, body: JSON, attempt: int) -> trace.Span:
    model = replica.backend.model
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "vllm",
        "gen_ai.request.model": model,
        "server.address": replica.url,
        "headwater.route.tier": replica.tier,
        "headwater.llm.attempt": attempt,
    }
    for key in ("max_tokens", "temperature", "top_p", "seed"):
        if body.get(key) is not None:
            attributes[f"gen_ai.request.{key}"] = body[key]
    # Attributes given at the start: one pass over them, not a locked update each.
    return _tracer.start_span(f"chat {model}", kind=trace.SpanKind.CLIENT, attributes=attributes)


def _record_response(span: trace.Span, result: JSON) -> None:
    """The GenAI semantic conventions' response attributes of a completion (or a stream's
    usage chunk): its id, model, finish reasons and token usage."""
    attributes: dict[str, Any] = {}
    if result.get("id"):
        attributes["gen_ai.response.id"] = str(result["id"])
    if result.get("model"):
        attributes["gen_ai.response.model"] = str(result["model"])
    reasons = [c["finish_reason"] for c in result.get("choices") or [] if c.get("finish_reason")]
    if reasons:
        attributes["gen_ai.response.finish_reasons"] = reasons
    usage = result.get("usage")
    if usage:
        attributes["gen_ai.usage.input_tokens"] = int(usage.get("prompt_tokens", 0))
        attributes["gen_ai.usage.output_tokens"] = int(usage.get("completion_tokens", 0))
    span.set_attributes(attributes)


def _count_ok(replica: Replica, routed: Tier) -> None:
    LLM_ATTEMPTS.labels(replica.tier, "ok" if replica.tier == routed else "fallback").inc()


def _fail(span: trace.Span, exc: BaseException) -> None:
    span.set_status(trace.Status(trace.StatusCode.ERROR, type(exc).__name__))
    span.set_attribute("error.type", type(exc).__name__)


class UpstreamStream:
    """A started upstream stream: the first chunk is in hand, the slot is held until the
    stream ends, fails, or is closed (a client disconnect closes it, which closes the
    upstream connection, which makes vLLM abort the request)."""

    def __init__(
        self,
        *,
        pool: TierPool,
        replica: Replica,
        span: trace.Span,
        first: JSON | None,
        rest: AsyncGenerator[JSON],
        started: float,
        busy_mark: float,
    ):
        self._pool, self._replica, self._span = pool, replica, span
        self._first, self._rest = first, rest
        self._started = started
        self._busy_mark = busy_mark
        self._closed = False
        self.busy_s = 0.0  # its share of the replica's busy time, once closed

    async def __aiter__(self) -> AsyncIterator[JSON]:
        try:
            if self._first is not None:
                yield self._observe(self._first)
            async for chunk in self._rest:
                yield self._observe(chunk)
        except UpstreamFailed as exc:
            self._replica.mark(healthy=False)
            if not self._closed:
                _fail(self._span, exc)
            raise
        except GeneratorExit:
            raise  # closed by its consumer: not a failure
        except BaseException as exc:  # cancellation (client gone) included
            if not self._closed:
                _fail(self._span, exc)
            raise
        finally:
            await self.aclose()

    def _observe(self, chunk: JSON) -> JSON:
        if chunk.get("usage") or any(c.get("finish_reason") for c in chunk.get("choices") or []):
            _record_response(self._span, chunk)
        return chunk

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            aclose = getattr(self._rest, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
        finally:
            self.busy_s = self._replica.busy.end(self._busy_mark)
            self._pool.release(self._replica, duration_s=time.perf_counter() - self._started)
            self._span.end()


class ChatGateway:
    """Sends a prepared OpenAI request body to a tier, with retries and fallback."""

    def __init__(self, pools: BackendPools):
        self._pools = pools

    def _plan(self, tier: Tier) -> list[TierPool]:
        """The routed tier, then the other one; a tier with no healthy replica goes last."""
        pools = self._pools.pools
        order = [pools[tier], *(pool for name, pool in pools.items() if name != tier)]
        return sorted(order, key=lambda pool: not pool.available)  # stable: keeps the order

    async def _attempts(self, tier: Tier) -> AsyncGenerator[tuple[TierPool, Replica, int]]:
        """Slots to try in order; each replica at most once."""
        tried: set[Replica] = set()
        for pool in self._plan(tier):
            while (replica := await pool.acquire(tried)) is not None:
                tried.add(replica)
                yield pool, replica, len(tried)

    async def complete(self, tier: Tier, body: JSON) -> tuple[JSON, Served]:
        last: UpstreamFailed | None = None
        async with contextlib.aclosing(self._attempts(tier)) as attempts:
            async for pool, replica, attempt in attempts:
                span = _chat_span(replica, body, attempt)
                try:
                    with trace.use_span(span, end_on_exit=False), pool.holding(replica):
                        mark = replica.busy.start()
                        try:
                            result = await replica.backend.complete({**body, "model": pool.model})
                        finally:
                            busy_s = replica.busy.end(mark)
                    _record_response(span, result)
                except UpstreamFailed as exc:
                    replica.mark(healthy=False)
                    _fail(span, exc)
                    LLM_ATTEMPTS.labels(replica.tier, "failed").inc()
                    last = exc
                    continue
                except BaseException as exc:
                    _fail(span, exc)
                    raise
                finally:
                    span.end()
                _count_ok(replica, tier)
                return result, Served(replica.tier, pool.model, replica.url, attempt, busy_s)
        raise UpstreamUnavailable(
            "no model server could answer; retry later", code="upstream_unavailable"
        ) from last

    async def open_stream(self, tier: Tier, body: JSON) -> tuple[UpstreamStream, Served]:
        """The upstream stream once its first chunk has arrived (a failure before that is
        retried on the next replica or tier)."""
        last: UpstreamFailed | None = None
        async with contextlib.aclosing(self._attempts(tier)) as attempts:
            async for pool, replica, attempt in attempts:
                span = _chat_span(replica, body, attempt)
                started = time.perf_counter()
                upstream = {
                    **body,
                    "model": pool.model,
                    "stream": True,
                    "stream_options": {"include_usage": True},
                }
                rest = replica.backend.stream(upstream)
                mark = replica.busy.start()
                try:
                    with trace.use_span(span, end_on_exit=False):
                        first: JSON | None = await anext(rest)
                except StopAsyncIteration:
                    first = None
                except UpstreamFailed as exc:
                    replica.mark(healthy=False)
                    _fail(span, exc)
                    span.end()
                    replica.busy.end(mark)
                    pool.release(replica)
                    LLM_ATTEMPTS.labels(replica.tier, "failed").inc()
                    last = exc
                    continue
                except BaseException as exc:
                    _fail(span, exc)
                    span.end()
                    replica.busy.end(mark)
                    pool.release(replica)
                    with contextlib.suppress(Exception):
                        await rest.aclose()
                    raise
                # No GenAI convention names a span attribute for it (the conventions'
                # time-to-first-token is a metric): ours, in seconds.
                span.set_attribute(
                    "headwater.llm.time_to_first_chunk_s", round(time.perf_counter() - started, 4)
                )
                _count_ok(replica, tier)
                stream = UpstreamStream(
                    pool=pool,
                    replica=replica,
                    span=span,
                    first=first,
                    rest=rest,
                    started=started,
                    busy_mark=mark,
                )
                return stream, Served(replica.tier, pool.model, replica.url, attempt)
        raise UpstreamUnavailable(
            "no model server could answer; retry later", code="upstream_unavailable"
        ) from last
