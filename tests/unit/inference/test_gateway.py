"""Replica choice, bounded admission, retries before the first token and tier fallback,
with scripted stand-ins for model servers (the real ones are in tests/e2e/test_gateway.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import pytest

from core.errors import InvalidRequest, UpstreamUnavailable
from inference.pool import BackendPools, ServiceBusy, Tier, TierPool
from inference.service import ChatGateway
from inference.vllm import UpstreamFailed


class Server:
    """A model server stand-in: answers, fails before output, or fails mid-stream."""

    def __init__(self, url: str, model: str, *, fail: str | None = None, delay_s: float = 0):
        self.base_url, self.model, self.fail, self.delay_s = url, model, fail, delay_s
        self.calls = 0
        self.closed_streams = 0
        self.up = fail != "down"

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        self.calls += 1
        await asyncio.sleep(self.delay_s)
        if self.fail in ("down", "5xx"):
            raise UpstreamFailed(f"{self.base_url} down")
        if self.fail == "reject":
            raise InvalidRequest("bad request", code="upstream_rejected")
        return {"model": body["model"], "served_by": self.base_url, "usage": {}}

    async def stream(self, body: dict[str, Any]) -> AsyncGenerator[dict[str, Any]]:
        self.calls += 1
        try:
            if self.fail == "down":
                raise UpstreamFailed(f"{self.base_url} down")
            for n in range(3):
                await asyncio.sleep(self.delay_s)
                if self.fail == "mid-stream" and n == 1:
                    raise UpstreamFailed("mid-stream", before_output=False)
                yield {"choices": [{"delta": {"content": f"{self.base_url}:{n}"}}]}
        finally:
            self.closed_streams += 1

    async def healthy(self, timeout_s: float = 2.0) -> bool:
        return self.up

    async def aclose(self) -> None:
        pass


def _pool(tier: Tier, *servers: Server, inflight: int = 4, queue: int = 4) -> TierPool:
    return TierPool(
        tier,
        list(servers),  # type: ignore[arg-type]
        max_inflight=inflight,
        queue_max=queue,
        queue_timeout_s=0.2,
    )


def _gateway(*pools: TierPool) -> ChatGateway:
    return ChatGateway(BackendPools({p.tier: p for p in pools}, health_interval_s=60))


async def test_least_outstanding_replica_is_chosen() -> None:
    a, b = Server("a", "m"), Server("b", "m")
    pool = _pool("small", a, b)
    first = await pool.acquire(set())
    second = await pool.acquire(set())
    assert first is not None and second is not None and first is not second
    pool.release(first)
    third = await pool.acquire(set())
    assert third is first  # the one with nothing in flight


async def test_a_full_queue_is_refused_at_once_with_retry_after() -> None:
    pool = _pool("small", Server("a", "m"), inflight=1, queue=1)
    held = await pool.acquire(set())
    waiting = asyncio.ensure_future(pool.acquire(set()))
    await asyncio.sleep(0)
    with pytest.raises(ServiceBusy) as info:
        await pool.acquire(set())
    assert info.value.status_code == 503 and info.value.retry_after_s >= 1
    assert held is not None
    pool.release(held)
    assert await waiting is held  # the waiter got the freed slot


async def test_a_wait_longer_than_the_queue_timeout_is_refused() -> None:
    pool = _pool("small", Server("a", "m"), inflight=1, queue=5)
    await pool.acquire(set())
    with pytest.raises(ServiceBusy, match="within"):
        await pool.acquire(set())
    assert pool.queued == 0


async def test_waiters_are_served_first_come_first_served() -> None:
    pool = _pool("small", Server("a", "m"), inflight=1, queue=5)
    held = await pool.acquire(set())
    assert held is not None
    order: list[int] = []

    async def wait(n: int) -> None:
        replica = await pool.acquire(set())
        order.append(n)
        assert replica is not None
        await asyncio.sleep(0.01)
        pool.release(replica)

    tasks = [asyncio.ensure_future(wait(n)) for n in range(3)]
    await asyncio.sleep(0.01)
    pool.release(held)
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2]


async def test_a_failing_replica_is_retried_on_another_and_marked_down() -> None:
    bad, good = Server("bad", "m", fail="down"), Server("good", "m")
    pool = _pool("small", bad, good)
    pool.replicas[1].outstanding = 1  # so the bad one, with fewer in flight, goes first
    result, served = await _gateway(pool).complete("small", {"messages": []})
    assert result["served_by"] == "good" and served.attempts == 2
    assert not pool.replicas[0].healthy and bad.calls == 1


async def test_a_down_tier_falls_back_to_the_other() -> None:
    small = _pool("small", Server("s", "small-m", fail="down"))
    large = _pool("large", Server("l", "large-m"))
    result, served = await _gateway(small, large).complete("small", {"messages": []})
    assert (served.tier, result["model"]) == ("large", "large-m")
    assert served.fell_back("small")


async def test_every_server_down_is_a_503() -> None:
    small = _pool("small", Server("s", "m", fail="down"))
    with pytest.raises(UpstreamUnavailable):
        await _gateway(small).complete("small", {"messages": []})


async def test_a_request_the_server_rejects_is_not_retried() -> None:
    a, b = Server("a", "m", fail="reject"), Server("b", "m")
    with pytest.raises(InvalidRequest):
        await _gateway(_pool("small", a, b)).complete("small", {"messages": []})
    assert a.calls + b.calls == 1


async def test_overload_does_not_spill_onto_the_other_tier() -> None:
    small = _pool("small", Server("s", "m", delay_s=1), inflight=1, queue=0)
    large = _pool("large", Server("l", "L"))
    gateway = _gateway(small, large)
    first = asyncio.ensure_future(gateway.complete("small", {"messages": []}))
    await asyncio.sleep(0.01)
    with pytest.raises(ServiceBusy):
        await gateway.complete("small", {"messages": []})
    first.cancel()


async def test_a_stream_failing_before_its_first_chunk_moves_to_another_replica() -> None:
    bad, good = Server("bad", "m", fail="down"), Server("good", "m")
    pool = _pool("small", bad, good)
    pool.replicas[1].outstanding = 1
    stream, served = await _gateway(pool).open_stream("small", {"messages": []})
    chunks = [c async for c in stream]
    assert served.backend == "good" and len(chunks) == 3
    assert all(r.outstanding == (1 if r.backend is good else 0) for r in pool.replicas)


async def test_a_failure_after_the_first_chunk_is_not_retried() -> None:
    pool = _pool("small", Server("a", "m", fail="mid-stream"), Server("b", "m"))
    stream, _ = await _gateway(pool).open_stream("small", {"messages": []})
    with pytest.raises(UpstreamFailed):
        _ = [c async for c in stream]
    assert all(r.outstanding == 0 for r in pool.replicas)


async def test_closing_a_stream_early_closes_upstream_and_frees_the_slot() -> None:
    server = Server("a", "m", delay_s=0.01)
    pool = _pool("small", server)
    stream, _ = await _gateway(pool).open_stream("small", {"messages": []})
    async for _chunk in stream:
        break
    await stream.aclose()
    assert server.closed_streams == 1 and pool.replicas[0].outstanding == 0


async def test_health_checks_bring_a_replica_back() -> None:
    server = Server("a", "m")
    pool = _pool("small", server)
    pool.replicas[0].mark(healthy=False)
    assert not pool.available
    await pool.check()
    assert pool.available
