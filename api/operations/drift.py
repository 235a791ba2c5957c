"""The drift monitor of an API process (``retrieval.drift``): built from settings, its
probe set re-embedded on a timer, and its state as the JSON API returns it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from pydantic import BaseModel

from core.settings import Settings
from retrieval.drift import DriftMonitor, DriftPolicy, DriftState
from retrieval.embedding import Embedder

_log = logging.getLogger(__name__)


class SignalInfo(BaseModel):
    value: float | None
    threshold: float
    alerting: bool


class DriftReport(BaseModel):
    """One tenant's drift: each signal, its alert threshold, and whether it is over it."""

    tenant: str
    window: int
    reference_size: int
    recent_queries: int
    reference_queries: int
    alerting: bool
    signals: dict[str, SignalInfo]

    @classmethod
    def of(cls, state: DriftState, policy: DriftPolicy) -> DriftReport:
        return cls(
            tenant=state.tenant,
            window=policy.window,
            reference_size=policy.reference_size,
            recent_queries=state.recent_queries,
            reference_queries=state.reference_queries,
            alerting=state.alerting,
            signals={
                name: SignalInfo(value=s.value, threshold=s.threshold, alerting=s.alerting)
                for name, s in state.signals.items()
            },
        )


def drift_policy(settings: Settings) -> DriftPolicy:
    return DriftPolicy(
        min_score=settings.grounding_min_score,
        window=settings.drift_window,
        reference_size=settings.drift_reference_size,
    )


async def _probe_loop(monitor: DriftMonitor, embedder: Embedder, interval_s: float) -> None:
    while True:
        try:
            await asyncio.to_thread(monitor.check_probes, embedder)
        except Exception:  # noqa: BLE001 - a failed probe must not stop the next one
            _log.warning("the drift probe set could not be embedded", exc_info=True)
        await asyncio.sleep(interval_s)


@asynccontextmanager
async def open_drift(settings: Settings, embedder: Embedder) -> AsyncIterator[DriftMonitor | None]:
    """The process's drift monitor (None when ``drift_enabled`` is false), with its probe
    loop running while the context is open."""
    if not settings.drift_enabled:
        yield None
        return
    monitor = DriftMonitor(drift_policy(settings), dim=embedder.dim)
    task = None
    if settings.drift_probe_interval_s > 0:
        task = asyncio.create_task(
            _probe_loop(monitor, embedder, settings.drift_probe_interval_s), name="drift-probes"
        )
    try:
        yield monitor
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
