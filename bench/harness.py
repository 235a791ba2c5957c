"""What the benchmarks share: a private Kafka broker, an in-process pipeline, and private
servers (vLLM, ``headwater serve``) started together and always stopped."""

from __future__ import annotations

import os
import random
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

from core.settings import Settings
from deploy.process import ManagedProcess
from headwater.clients import SharedClients
from headwater.processes import ingesting
from ingest.models import DocumentEvent

WORDS = [
    "budget",
    "travel",
    "policy",
    "salary",
    "review",
    "onboarding",
    "security",
    "incident",
    "vendor",
    "contract",
    "holiday",
    "parking",
    "expense",
    "laptop",
    "hiring",
    "payroll",
    "audit",
    "roadmap",
    "quarterly",
    "customer",
    "pricing",
    "release",
    "outage",
    "training",
    "compliance",
    "benefits",
    "office",
    "migration",
    "database",
]


@contextmanager
def started(
    processes: Sequence[ManagedProcess],
    *,
    timeout_s: float,
    say: Callable[[str], None] = lambda _: None,
) -> Iterator[dict[str, float]]:
    """Start ``processes`` together, wait until each is ready, stop them newest first on exit.

    Yields the seconds each took to become ready, by process name. A process that fails
    to start shows its log tail in the raised ``StackError``.
    """
    running: list[ManagedProcess] = []
    try:
        for process in processes:
            process.start()
            running.append(process)
        ready_s: dict[str, float] = {}
        began = time.monotonic()
        for process in processes:
            # Started together: each one's wait counts from the common start.
            process.wait_ready(max(1.0, timeout_s - (time.monotonic() - began)))
            ready_s[process.name] = round(time.monotonic() - began, 1)
            say(f"{process.name} ready after {ready_s[process.name]:.0f}s - log {process.log_path}")
        yield ready_s
    finally:
        for process in reversed(running):
            process.stop()


@contextmanager
def workspace() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="headwater-bench-") as root:
        yield Path(root)


@asynccontextmanager
async def running_pipeline(settings: Settings) -> AsyncIterator[SharedClients]:
    """The worker consuming on this event loop over an embedded store."""
    async with ingesting(settings) as opened:
        yield opened


def document(rng: random.Random, doc_id: str, *, words: int, version: int = 1) -> DocumentEvent:
    """A synthetic hr-only document of about ``words`` words."""
    text = " ".join(rng.choice(WORDS) for _ in range(words)) + "."
    return DocumentEvent(
        op="upsert",
        tenant="acme",
        doc_id=doc_id,
        version=version,
        acl={"groups": ["hr"]},
        title=f"{rng.choice(WORDS)} {doc_id}",
        text=text,
    )


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0..1) with linear interpolation between ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 1:
        raise ValueError(f"quantile {q} is outside 0..1")
    ordered = sorted(values)
    rank = q * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_ms(values_s: Sequence[float]) -> dict[str, float]:
    """p50 and p95 of latencies given in seconds, in milliseconds (3 decimals)."""
    return {
        "p50_ms": round(percentile(values_s, 0.5) * 1000, 3),
        "p95_ms": round(percentile(values_s, 0.95) * 1000, 3),
    }


def paired_differences(first: Sequence[float], second: Sequence[float]) -> list[float]:
    """``second[i] - first[i]`` for each pair; both sequences must be the same length."""
    if len(first) != len(second):
        raise ValueError(f"unpaired samples: {len(first)} and {len(second)}")
    return [b - a for a, b in zip(first, second, strict=True)]


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid``'s process group (the process and its children), MB
    (``VmRSS`` from /proc: anonymous memory and mapped file pages both)."""
    total_kb = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) != pid:
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except (OSError, ProcessLookupError, ValueError):
            continue
    return round(total_kb / 1024, 1)
