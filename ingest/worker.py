"""The faust-streaming adapter: one agent on ``headwater.documents.v1``.

The agent takes events in batches (up to ``ingest_batch_max`` within
``ingest_batch_window_s``) so one embedding call serves many documents. faust acks a
batch's events only when the agent asks for the next batch, i.e. after the handler has
applied or dead-lettered every one of them; offsets are committed after that. A crash
before then re-delivers the batch, and re-applying it is harmless.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import faust
from faust.contrib.asgi import faust_app_running

from core.kafka import KafkaProducer, header_pairs
from core.settings import Settings
from ingest.messages import RawMessage, dead_letter_headers, dead_letter_key
from ingest.service import DocumentEventHandler


class KafkaDeadLetters:
    """Dead-letter sink on the DLQ topic: the original bytes under the document's key
    (the original key in ``x-source-key``), the reason in headers."""

    def __init__(self, producer: KafkaProducer, topic: str):
        self._producer = producer
        self._topic = topic

    async def send(self, message: RawMessage, *, reason: str, error_type: str) -> None:
        await self._producer.send_async(
            self._topic,
            key=dead_letter_key(message),
            value=b"" if message.value is None else message.value,
            headers=dead_letter_headers(message, reason=reason, error_type=error_type),
        )


def build_faust_app(settings: Settings, handler: DocumentEventHandler) -> faust.App:
    """A faust app whose single agent feeds every document message to ``handler``."""
    app = faust.App(
        settings.consumer_group,
        broker=f"kafka://{settings.kafka_bootstrap}",
        autodiscover=False,
        web_enabled=False,
        store="memory://",
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        broker_commit_every=1,
        # A worker killed without a goodbye is evicted after this, and its partitions
        # move to the survivors (or to its own restart).
        broker_session_timeout=10.0,
        broker_heartbeat_interval=3.0,
        topic_partitions=settings.topic_partitions,
    )
    topic = app.topic(
        settings.documents_topic,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )

    async def documents(stream: Any) -> None:
        batches = stream.take_events(
            settings.ingest_batch_max, within=settings.ingest_batch_window_s
        )
        async for events in batches:
            await handler.handle_batch([_raw(event.message) for event in events])

    app.agent(topic, name="headwater.ingest.documents")(documents)
    return app


def _raw(message: Any) -> RawMessage:
    return RawMessage(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
        headers=tuple(header_pairs(message.headers)),
        timestamp_s=message.timestamp,
    )


@asynccontextmanager
async def ingest_running(app: faust.App) -> AsyncIterator[faust.App]:
    """Run the faust app on the current event loop (inside the API's lifespan or alone)."""
    async with faust_app_running(app, stop_timeout=30.0):
        yield app
