"""The clients every Headwater process shares, opened once: the embedding model, the
vector store (its collection created if missing) and the Kafka producer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from core.kafka import KafkaProducer, ensure_topics
from core.settings import Settings
from retrieval.embedding import Embedder, open_embedder
from retrieval.store import VectorStore, open_store


@dataclass
class SharedClients:
    """What both the API and the ingest worker use (one of each per process)."""

    store: VectorStore
    embedder: Embedder
    producer: KafkaProducer


@asynccontextmanager
async def open_shared_clients(
    settings: Settings, *, embedder: Embedder | None = None
) -> AsyncIterator[SharedClients]:
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
        yield SharedClients(store=store, embedder=embedder, producer=producer)
