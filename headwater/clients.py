"""The clients every Headwater process shares, opened once: the embedding model, the
vector store (its collection created if missing, and bound to the model: a process
whose model or chunking differs from what built the collection refuses to start) and
the Kafka producer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from core.kafka import KafkaProducer, ensure_topics
from core.settings import Settings
from retrieval.binding import CollectionBinding, bind_collection
from retrieval.embedding import Embedder, open_embedder
from retrieval.store import VectorStore, open_store


@dataclass
class SharedClients:
    """What both the API and the ingest worker use (one of each per process)."""

    store: VectorStore
    embedder: Embedder
    producer: KafkaProducer
    binding: CollectionBinding
    # The settings an ingest worker of this collection runs with: its consumer group is
    # the one recorded in the binding (a re-indexed collection has its own).
    ingest_settings: Settings


@asynccontextmanager
async def open_shared_clients(
    settings: Settings,
    *,
    embedder: Embedder | None = None,
    build: str | None = None,
    consumer_group: str | None = None,
) -> AsyncIterator[SharedClients]:
    """Load the embedder (unless given one), open the store (creating its collection,
    named ``build`` if given, and checking its binding; a new collection is bound to this
    model and ``consumer_group``) and the producer, and make sure the topics exist.
    Closed in reverse order."""
    async with AsyncExitStack() as stack:
        if embedder is None:
            embedder = await asyncio.to_thread(open_embedder, settings)
        store = open_store(settings)
        stack.callback(store.close)
        store.ensure_collection(dim=embedder.dim, model=embedder.model_name, name=build)
        wanted = await asyncio.to_thread(
            CollectionBinding.of, settings, embedder, consumer_group=consumer_group
        )
        bind_collection(store, wanted, alias=settings.collection)
        binding = CollectionBinding.from_payload(store.binding() or wanted.to_payload())
        group = binding.consumer_group or settings.consumer_group
        await asyncio.to_thread(ensure_topics, settings)
        producer = KafkaProducer(settings.kafka_bootstrap)
        stack.callback(producer.close)
        yield SharedClients(
            store=store,
            embedder=embedder,
            producer=producer,
            binding=binding,
            ingest_settings=settings.model_copy(update={"consumer_group": group}),
        )
