"""What the ingest benchmarks share: a private Kafka broker and an in-process pipeline."""

from __future__ import annotations

import random
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

from core.settings import Settings
from deploy.process import free_port
from deploy.stack import kafka_process
from ingest.models import DocumentEvent
from ingest.runtime import PipelineClients, ingest_worker, open_pipeline_clients

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
def private_broker(root: Path) -> Iterator[str]:
    """A Kafka broker of the benchmark's own on free ports; stopped on exit."""
    port = free_port()
    broker = kafka_process(port=port, data_dir=root / "kafka", log_path=root / "kafka.log")
    broker.start()
    try:
        broker.wait_ready(120)
        yield f"127.0.0.1:{port}"
    finally:
        broker.stop()


@contextmanager
def workspace() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="headwater-bench-") as root:
        yield Path(root)


@asynccontextmanager
async def running_pipeline(settings: Settings) -> AsyncIterator[PipelineClients]:
    """The worker consuming on this event loop over an embedded store."""
    async with (
        open_pipeline_clients(settings) as opened,
        ingest_worker(
            settings, store=opened.store, embedder=opened.embedder, producer=opened.producer
        ),
    ):
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
