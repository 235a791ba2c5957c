"""Assembles the ingest pipeline (writer, handler, faust app) over opened clients."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import faust
from prometheus_client import start_http_server

from core.errors import UpstreamUnavailable
from core.metrics import INGEST_CONSUMER_LAG
from core.settings import Settings
from ingest.chunking import Chunker
from ingest.kafka import ConsumerLag, KafkaProducer, ensure_topics
from ingest.service import DocumentEventHandler, RetryPolicy
from ingest.worker import KafkaDeadLetters, build_faust_app, ingest_running
from ingest.writer import IndexWriter
from retrieval.embedding import Embedder, open_embedder
from retrieval.store import VectorStore, open_store

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
        try:
            yield app
        finally:
            reporter.cancel()


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


@dataclass
class PipelineClients:
    """The clients both the API and the worker need."""

    store: VectorStore
    embedder: Embedder
    producer: KafkaProducer


@asynccontextmanager
async def open_pipeline_clients(
    settings: Settings, *, embedder: Embedder | None = None
) -> AsyncIterator[PipelineClients]:
    """Load the embedder (unless given one), open the store (creating its collection) and
    the producer, and make sure the topics exist. Closed in reverse order."""
    async with AsyncExitStack() as stack:
        if embedder is None:
            embedder = await asyncio.to_thread(open_embedder, settings)
        store = open_store(settings)
        stack.callback(store.close)
        store.ensure_collection(dim=embedder.dim, model=embedder.model_name)
        await asyncio.to_thread(ensure_topics, settings)
        producer = KafkaProducer(settings.kafka_bootstrap)
        stack.callback(producer.close)
        yield PipelineClients(store=store, embedder=embedder, producer=producer)


async def run_worker(settings: Settings) -> None:
    """The standalone ``headwater worker`` process: consume until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # /metrics for Prometheus, on the port the API would use (compose and k8s scrape it).
    server, thread = start_http_server(settings.port, addr=settings.host)
    try:
        async with (
            open_pipeline_clients(settings) as clients,
            ingest_worker(
                settings, store=clients.store, embedder=clients.embedder, producer=clients.producer
            ),
        ):
            _log.info(
                "ingest worker consuming %s; metrics on :%s",
                settings.documents_topic,
                settings.port,
            )
            await stop.wait()
    finally:
        server.shutdown()
        thread.join(timeout=5)
