"""Kafka -> faust worker -> embeddings -> embedded Qdrant, on the real broker and model."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer

from core.kafka import KafkaProducer
from core.settings import Settings
from headwater.clients import SharedClients, open_shared_clients
from ingest.models import DocumentEvent
from ingest.publish import DocumentPublisher
from ingest.runtime import ingest_worker
from retrieval.embedding import SentenceTransformerEmbedder

pytestmark = pytest.mark.integration


@pytest.fixture
async def pipeline(
    kafka_bootstrap: str, embedder: SentenceTransformerEmbedder, tmp_path: Path
) -> AsyncIterator[tuple[Settings, SharedClients]]:
    run = uuid.uuid4().hex[:8]
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        data_dir=tmp_path,
        documents_topic=f"test-{run}.documents",
        dlq_topic=f"test-{run}.documents.dlq",
        consumer_group=f"test-{run}",
        topic_partitions=2,
    )
    async with (
        open_shared_clients(settings, embedder=embedder) as clients,
        ingest_worker(
            settings, store=clients.store, embedder=clients.embedder, producer=clients.producer
        ),
    ):
        yield settings, clients


def _event(doc_id: str, text: str, version: int = 1) -> DocumentEvent:
    return DocumentEvent(
        op="upsert",
        tenant="acme",
        doc_id=doc_id,
        version=version,
        acl={"groups": ["hr"]},
        title=doc_id,
        text=text,
    )


async def _wait_indexed(clients: SharedClients, doc_id: str, timeout_s: float = 60) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        count = clients.store.count(tenant="acme", doc_id=doc_id)
        if count:
            return count
        await asyncio.sleep(0.1)
    raise AssertionError(f"{doc_id} was not indexed within {timeout_s}s")


async def test_published_document_is_chunked_embedded_and_stored(
    pipeline: tuple[Settings, SharedClients],
) -> None:
    settings, clients = pipeline
    text = " ".join(f"Sentence number {i} about the salary review process." for i in range(120))
    publisher = DocumentPublisher(clients.producer, settings.documents_topic)
    delivered = await publisher.publish_async(_event("long-doc", text))
    assert delivered.topic == settings.documents_topic
    chunks = await _wait_indexed(clients, "long-doc")
    assert chunks > 1, "a long document is split into several chunks"
    chunk = clients.store.search(
        embedder_vector(clients, "salary review"), permission=_hr(), limit=1
    )[0].chunk
    assert chunk.acl.groups == ("hr",) and chunk.tenant == "acme"
    assert chunk.version == 1 and len(chunk.document.content_sha256 or "") == 64


async def test_malformed_message_goes_to_the_dlq_and_consumption_continues(
    pipeline: tuple[Settings, SharedClients],
) -> None:
    settings, clients = pipeline
    producer = KafkaProducer(settings.kafka_bootstrap)
    bad = producer.send(settings.documents_topic, key=b"acme/bad", value=b'{"op": "upsert", oops')
    good = _event("after-bad", "Holiday policy: twenty five days.")
    await DocumentPublisher(producer, settings.documents_topic).publish_async(good)
    producer.close()
    await _wait_indexed(clients, "after-bad")

    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"dlq-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([settings.dlq_topic])
    try:
        message = None
        deadline = time.monotonic() + 30
        while message is None and time.monotonic() < deadline:
            candidate = await asyncio.to_thread(consumer.poll, 1.0)
            # Null values are the workers' seals (ingest.runtime.seal_partitions).
            if candidate is not None and not candidate.error() and candidate.value() is not None:
                message = candidate
    finally:
        consumer.close()
    assert message is not None, "nothing reached the DLQ"
    headers = {key: value.decode() for key, value in message.headers() or []}
    assert message.key() == b"acme/bad" and message.value() == b'{"op": "upsert", oops'
    assert headers["x-error-type"] == "validation"
    assert "invalid document event" in headers["x-error"]
    assert headers["x-source-topic"] == settings.documents_topic
    assert (int(headers["x-source-partition"]), int(headers["x-source-offset"])) == (
        bad.partition,
        bad.offset,
    )
    assert "x-failed-at" in headers


def _hr():  # type: ignore[no-untyped-def]
    from acl.filter import PermissionFilter
    from acl.models import Principal

    return PermissionFilter.for_principal(Principal(tenant="acme", user_id="x", groups=("hr",)))


def embedder_vector(clients: SharedClients, text: str) -> list[float]:
    return clients.embedder.embed([text])[0]


async def test_dlq_list_and_replay_bring_a_fixed_event_back(
    pipeline: tuple[Settings, SharedClients], monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from headwater.cli import app

    settings, clients = pipeline
    for name in ("kafka_bootstrap", "documents_topic", "dlq_topic"):
        monkeypatch.setenv(f"HEADWATER_{name.upper()}", str(getattr(settings, name)))
    event = _event("replayed-doc", "Expense claims are paid on the 25th.")
    producer = KafkaProducer(settings.kafka_bootstrap)
    producer.send(
        settings.dlq_topic,
        key=event.key.encode(),
        value=event.to_json(),
        headers=[("x-error", b"store was down"), ("x-error-type", b"UpstreamUnavailable")],
    )
    producer.close()
    runner = CliRunner()
    listed = await asyncio.to_thread(runner.invoke, app, ["dlq", "list"], env={"COLUMNS": "200"})
    assert listed.exit_code == 0 and "UpstreamUnavailable" in listed.output
    replay = await asyncio.to_thread(runner.invoke, app, ["dlq", "replay"])
    assert replay.exit_code == 0, replay.output
    assert "1 message(s) replayed" in replay.output
    await _wait_indexed(clients, "replayed-doc")
    again = await asyncio.to_thread(runner.invoke, app, ["dlq", "replay"])
    assert "0 message(s) replayed" in again.output, "each message is replayed once"
