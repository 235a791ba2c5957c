"""The faust-streaming adapter: one agent on ``headwater.documents.v1``.

faust acks a message once the agent moves past it, so the handler must finish (apply
or dead-letter, both awaited) before the loop takes the next event; offsets are then
committed by faust in the background.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import faust
from faust.contrib.asgi import faust_app_running

from core.settings import Settings
from ingest.kafka import KafkaProducer
from ingest.service import DocumentEventHandler, RawMessage, dead_letter_headers


class KafkaDeadLetters:
    """Dead-letter sink on the DLQ topic: original key and bytes, reason in headers."""

    def __init__(self, producer: KafkaProducer, topic: str):
        self._producer = producer
        self._topic = topic

    async def send(self, message: RawMessage, *, reason: str, error_type: str) -> None:
        await self._producer.send_async(
            self._topic,
            key=message.key,
            value=message.value,
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
        async for event in stream.events():
            message = event.message
            await handler.handle(
                RawMessage(
                    topic=message.topic,
                    partition=message.partition,
                    offset=message.offset,
                    key=message.key,
                    value=message.value,
                    headers=tuple(_headers(message.headers)),
                )
            )

    app.agent(topic, name="headwater.ingest.documents")(documents)
    return app


def _headers(raw: Any) -> list[tuple[str, bytes]]:
    items = raw.items() if hasattr(raw, "items") else (raw or [])
    return [(str(key), bytes(value)) for key, value in items if value is not None]


@asynccontextmanager
async def ingest_running(app: faust.App) -> AsyncIterator[faust.App]:
    """Run the faust app on the current event loop (inside the API's lifespan or alone)."""
    async with faust_app_running(app, stop_timeout=30.0):
        yield app
