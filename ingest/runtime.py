"""Assembles the ingest pipeline (writer, handler, faust app) over clients opened by the
composition root (``headwater.clients``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import faust

from core.errors import UpstreamUnavailable
from core.kafka import ConsumerLag, KafkaProducer
from core.metrics import INGEST_CONSUMER_LAG
from core.settings import Settings
from ingest.chunking import Chunker
from ingest.models import SEAL_KEY
from ingest.service import DocumentEventHandler, RetryPolicy
from ingest.worker import KafkaDeadLetters, build_faust_app, ingest_running
from ingest.writer import IndexWriter
from retrieval.embedding import Embedder
from retrieval.store import VectorStore

_log = logging.getLogger(__name__)


def build_writer(settings: Settings, *, store: VectorStore, embedder: Embedder) -> IndexWriter:
    """The index writer, with chunks sized to the embedding model's window."""
    # Two special tokens ([CLS], [SEP]) share the model's window with the chunk.
    chunk_tokens = min(settings.chunk_tokens, embedder.max_tokens - 2)
    chunker = Chunker(
        embedder.token_offsets,
        max_tokens=chunk_tokens,
        overlap_tokens=min(settings.chunk_overlap_tokens, chunk_tokens // 2),
    )
    return IndexWriter(
        store=store, embedder=embedder, chunker=chunker, collection=settings.collection
    )


@asynccontextmanager
async def ingest_worker(
    settings: Settings, *, store: VectorStore, embedder: Embedder, producer: KafkaProducer
) -> AsyncIterator[faust.App]:
    """Consume ``headwater.documents.v1`` on the current loop until the context exits."""
    handler = DocumentEventHandler(
        writer=build_writer(settings, store=store, embedder=embedder),
        dead_letters=KafkaDeadLetters(producer, settings.dlq_topic),
        retry=RetryPolicy(
            max_attempts=settings.ingest_max_attempts,
            transient_budget_s=settings.ingest_transient_budget_s,
        ),
    )
    async with ingest_running(build_faust_app(settings, handler)) as app:
        reporter = asyncio.create_task(_report_lag(settings), name="headwater-lag")
        sealer = asyncio.create_task(seal_partitions(settings, producer), name="headwater-seal")
        try:
            yield app
        finally:
            reporter.cancel()
            sealer.cancel()


async def seal_partitions(settings: Settings, producer: KafkaProducer) -> None:
    """Append the seal (a tombstone of ``SEAL_KEY``, which the worker ignores) to every
    partition of the documents and dead-letter topics each quarter of their
    ``segment.ms``, until cancelled.

    Kafka closes a partition's active segment only when a record is appended after
    ``segment.ms``, and never compacts the active segment: without the seal, a
    tombstone on an idle partition (an erasure, a delete) would wait there for the next
    write, however late it came. With it, the segment closes within 1.25 x segment.ms.
    """
    every_s = max(1.0, settings.documents_segment_ms / 4000)
    while True:
        for topic in (settings.documents_topic, settings.dlq_topic):
            try:
                count = await asyncio.to_thread(producer.partitions, topic)
                await asyncio.gather(
                    *(
                        producer.send_async(topic, key=SEAL_KEY, value=None, partition=partition)
                        for partition in range(count)
                    )
                )
            except UpstreamUnavailable as exc:
                _log.warning("could not seal the partitions of %s: %s", topic, exc)
        await asyncio.sleep(every_s)


async def _report_lag(settings: Settings, every_s: float = 5.0) -> None:
    """Keep ``headwater_ingest_consumer_lag`` current."""
    probe = ConsumerLag(
        settings.kafka_bootstrap, group=settings.consumer_group, topic=settings.documents_topic
    )
    loop = asyncio.get_running_loop()
    reading: asyncio.Future[dict[int, int]] | None = None
    try:
        while True:
            reading = loop.run_in_executor(None, probe.read)
            try:
                # Shielded: a cancelled reporter lets the reading in its thread finish
                # before the consumer closes under it (its outcome is not needed then).
                lag = await asyncio.shield(reading)
            except UpstreamUnavailable as exc:
                _log.warning("%s", exc)
            else:
                for partition, behind in lag.items():
                    INGEST_CONSUMER_LAG.labels(settings.documents_topic, str(partition)).set(behind)
            await asyncio.sleep(every_s)
    finally:
        if reading is None or reading.done():
            probe.close()
        else:
            reading.add_done_callback(lambda _: probe.close())
