"""Model-server replicas per tier: health, least-outstanding choice, bounded admission.

Each tier (``small``, ``large``) has one or more replicas of the same served model. A
request takes a slot on the healthy replica with the fewest requests in flight; a
replica holds at most ``max_inflight`` requests. When every replica is full the request
waits in the tier's queue (first come, first served), at most ``queue_max`` waiting and
for at most ``queue_timeout_s``; beyond either bound it is refused at once with
``ServiceBusy`` (HTTP 503 with ``Retry-After``) — never an unbounded queue.

Health: a replica that fails to connect, times out or answers 5xx is marked unhealthy
at once (passive check); a background task probes every replica's ``/health`` every
``interval_s`` and marks it healthy again when it answers (active check).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from core.errors import UpstreamUnavailable
from core.metrics import LLM_BACKEND_HEALTHY, LLM_INFLIGHT, LLM_QUEUE_REJECTED, LLM_QUEUED
from inference.busy import BusyShares
from inference.vllm import OpenAIBackend

Tier = Literal["small", "large"]
_log = logging.getLogger(__name__)


class ServiceBusy(UpstreamUnavailable):
    """Every replica of the tier is full and the queue is too (or the wait timed out)."""

    def __init__(self, message: str, *, retry_after_s: int):
        super().__init__(message, code="overloaded")
        self.retry_after_s = retry_after_s


@dataclass(eq=False)
class Replica:
    """One model server of a tier and what the gateway knows about it."""

    tier: Tier
    backend: OpenAIBackend
    outstanding: int = 0
    healthy: bool = True
    failures: int = 0
    checked_at: float = field(default=0.0)
    busy: BusyShares = field(default_factory=BusyShares)  # GPU-seconds per request

    def __post_init__(self) -> None:
        # The gauge's child, looked up once (a labelled lookup takes a lock per call).
        self.inflight_gauge = LLM_INFLIGHT.labels(self.tier, self.url)

    @property
    def url(self) -> str:
        return self.backend.base_url

    def mark(self, *, healthy: bool) -> None:
        if healthy != self.healthy:
            _log.warning(
                "model server %s (%s) is %s", self.url, self.tier, "up" if healthy else "down"
            )
        self.healthy = healthy
        self.failures = 0 if healthy else self.failures + 1
        LLM_BACKEND_HEALTHY.labels(self.tier, self.url).set(1 if healthy else 0)


class TierPool:
    """The replicas of one tier and their admission queue."""

    def __init__(
        self,
        tier: Tier,
        backends: list[OpenAIBackend],
        *,
        max_inflight: int,
        queue_max: int,
        queue_timeout_s: float,
    ):
        if not backends:
            raise ValueError(f"tier {tier} needs at least one model server")
        self.tier = tier
        self.model = backends[0].model
        self.replicas = [Replica(tier, backend) for backend in backends]
        self._max_inflight = max_inflight
        self._queue_max = queue_max
        self._queue_timeout_s = queue_timeout_s
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._latency_s = 1.0  # moving average of a request's duration, for Retry-After
        for replica in self.replicas:
            LLM_BACKEND_HEALTHY.labels(tier, replica.url).set(1)

    @property
    def available(self) -> bool:
        """At least one replica is believed healthy."""
        return any(replica.healthy for replica in self.replicas)

    @property
    def queued(self) -> int:
        return len(self._waiters)

    def _pick(self, exclude: set[Replica]) -> Replica | None:
        """The healthy replica with the fewest in flight that has a free slot. When no
        replica is believed healthy, any replica may be tried (the belief may be stale)."""
        candidates = [r for r in self.replicas if r not in exclude]
        healthy = [r for r in candidates if r.healthy] or candidates
        free = [r for r in healthy if r.outstanding < self._max_inflight]
        return min(free, key=lambda r: r.outstanding) if free else None

    def retry_after_s(self) -> int:
        """Seconds until a slot is likely free: the queue ahead drained at full capacity."""
        capacity = self._max_inflight * len(self.replicas)
        return max(1, min(60, math.ceil(self._latency_s * (self.queued + 1) / capacity)))

    async def acquire(self, exclude: set[Replica]) -> Replica | None:
        """A slot on a replica not in ``exclude``; None when every replica is excluded.

        Raises ``ServiceBusy`` when the queue is full or the wait times out.
        """
        if all(r in exclude for r in self.replicas):
            return None
        if not self._waiters and (replica := self._pick(exclude)) is not None:
            return self._take(replica)
        if self.queued >= self._queue_max:
            LLM_QUEUE_REJECTED.labels(self.tier, "full").inc()
            raise ServiceBusy(
                f"the {self.tier} model tier is at capacity; retry later",
                retry_after_s=self.retry_after_s(),
            )
        deadline = time.monotonic() + self._queue_timeout_s
        loop = asyncio.get_running_loop()
        LLM_QUEUED.labels(self.tier).inc()
        try:
            woken = False
            while True:
                if woken:
                    self._wake()  # the free slot is not for us (excluded): pass it on
                waiter: asyncio.Future[None] = loop.create_future()
                self._waiters.append(waiter)
                try:
                    await asyncio.wait_for(waiter, timeout=max(0.0, deadline - time.monotonic()))
                    woken = True
                except TimeoutError:
                    if waiter.done() and not waiter.cancelled():
                        self._wake()  # woken just as the wait ran out: pass the slot on
                    LLM_QUEUE_REJECTED.labels(self.tier, "timeout").inc()
                    raise ServiceBusy(
                        f"no {self.tier} model server became free within "
                        f"{self._queue_timeout_s:g} s; retry later",
                        retry_after_s=self.retry_after_s(),
                    ) from None
                finally:
                    with contextlib.suppress(ValueError):
                        self._waiters.remove(waiter)
                if (replica := self._pick(exclude)) is not None:
                    return self._take(replica)
        finally:
            LLM_QUEUED.labels(self.tier).dec()

    def _take(self, replica: Replica) -> Replica:
        replica.outstanding += 1
        replica.inflight_gauge.inc()
        return replica

    def release(self, replica: Replica, *, duration_s: float | None = None) -> None:
        replica.outstanding -= 1
        replica.inflight_gauge.dec()
        if duration_s is not None:
            self._latency_s = 0.9 * self._latency_s + 0.1 * duration_s
        self._wake()

    def _wake(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
                return

    @contextlib.contextmanager
    def holding(self, replica: Replica) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.release(replica, duration_s=time.perf_counter() - started)

    async def check(self) -> None:
        """Probe every replica's health endpoint once."""
        results = await asyncio.gather(*(r.backend.healthy() for r in self.replicas))
        for replica, ok in zip(self.replicas, results, strict=True):
            replica.checked_at = time.monotonic()
            replica.mark(healthy=ok)
        self._wake()

    async def aclose(self) -> None:
        for replica in self.replicas:
            await replica.backend.aclose()


class BackendPools:
    """Every tier's pool, and the health checker that keeps their state current."""

    def __init__(self, pools: dict[Tier, TierPool], *, health_interval_s: float):
        if "small" not in pools:
            raise ValueError("the small tier is required")
        self.pools = pools
        self._interval_s = health_interval_s
        self._task: asyncio.Task[None] | None = None

    def served_models(self) -> list[str]:
        return sorted({pool.model for pool in self.pools.values()})

    def tier_of(self, model: str) -> Tier | None:
        for tier, pool in self.pools.items():
            if pool.model == model:
                return tier
        return None

    async def check(self) -> None:
        await asyncio.gather(*(pool.check() for pool in self.pools.values()))

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.check()
            except Exception:  # noqa: BLE001 - a failed round must not stop the checker
                _log.exception("model server health check failed")

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._health_loop(), name="headwater-llm-health"
            )

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for pool in self.pools.values():
            await pool.aclose()
