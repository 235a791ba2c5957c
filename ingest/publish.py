"""The connector SDK: publish document events to Kafka inside a producer span, and erase
documents.

Every record of a document goes to the partition of its document key (the one
librdkafka's partitioner picks for it), its ACL changes included, although those are
keyed apart (``ingest.models``): so all of them stay in order. A delete is followed by
tombstones for both keys, so that compaction drops the document from the log.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from opentelemetry import trace

from core.kafka import Delivered, KafkaProducer, key_partition
from core.telemetry import inject_headers
from ingest.models import (
    ERASURE_HEADER,
    SWEEP_HEADER,
    DocumentEvent,
    ErasureRecord,
    acl_key,
    document_key,
)

_tracer = trace.get_tracer("headwater.ingest")


class DocumentPublisher:
    """Sends document events keyed as ``ingest.models`` says, carrying ``traceparent``."""

    def __init__(self, producer: KafkaProducer, topic: str):
        self._producer = producer
        self._topic = topic

    def publish(self, event: DocumentEvent) -> Delivered:
        """Publish and wait for the broker's acknowledgement (of the event itself; a
        delete's tombstones are acknowledged before this returns too)."""
        with _tracer.start_as_current_span(
            f"send {self._topic}", kind=trace.SpanKind.PRODUCER
        ) as span:
            _producer_attributes(span, self._topic, event)
            partition = key_partition(event.key.encode(), self._producer.partitions(self._topic))
            delivered = self._producer.send(
                self._topic,
                key=event.record_key.encode(),
                value=event.to_json(),
                headers=inject_headers(),
                partition=partition,
            )
            if event.op == "delete":
                for key in _document_keys(event.tenant, event.doc_id):
                    self._producer.send(self._topic, key=key, value=None, partition=partition)
            _delivered_attributes(span, delivered)
            return delivered

    async def publish_async(self, event: DocumentEvent) -> Delivered:
        """As :meth:`publish`, without blocking the event loop."""
        with _tracer.start_as_current_span(
            f"send {self._topic}", kind=trace.SpanKind.PRODUCER
        ) as span:
            _producer_attributes(span, self._topic, event)
            count = await asyncio.to_thread(self._producer.partitions, self._topic)
            partition = key_partition(event.key.encode(), count)
            delivered = await self._producer.send_async(
                self._topic,
                key=event.record_key.encode(),
                value=event.to_json(),
                headers=inject_headers(),
                partition=partition,
            )
            if event.op == "delete":
                await asyncio.gather(
                    *(
                        self._producer.send_async(
                            self._topic, key=key, value=None, partition=partition
                        )
                        for key in _document_keys(event.tenant, event.doc_id)
                    )
                )
            _delivered_attributes(span, delivered)
            return delivered


def _document_keys(tenant: str, doc_id: str) -> list[bytes]:
    return [document_key(tenant, doc_id).encode(), acl_key(tenant, doc_id).encode()]


def _producer_attributes(span: trace.Span, topic: str, event: DocumentEvent) -> None:
    span.set_attribute("messaging.system", "kafka")
    span.set_attribute("messaging.operation.type", "send")
    span.set_attribute("messaging.destination.name", topic)
    span.set_attribute("messaging.kafka.message.key", event.record_key)
    span.set_attribute("headwater.document.op", event.op)


def _delivered_attributes(span: trace.Span, delivered: Delivered) -> None:
    span.set_attribute("messaging.destination.partition.id", str(delivered.partition))
    span.set_attribute("messaging.kafka.offset", delivered.offset)


@dataclass(frozen=True)
class Requester:
    """Who asks for an erasure, as the audit records it."""

    user_id: str
    via: Literal["cli", "api"]
    key_id: str | None = None
    reference: str | None = None


class DocumentEraser:
    """Erases documents: tombstones on the documents and dead-letter topics, and an
    :class:`~ingest.models.ErasureRecord` on the audit topic.

    On the documents topic, the tombstone of the document key on its own partition
    carries ``x-headwater-erasure``: the ingest worker that reads it deletes the chunks
    and purges the store's files of them. The other partitions get sweep tombstones of
    both keys, for records a producer with another partitioner may have put there.
    Dead letters are keyed by document key (``ingest.messages.dead_letter_key``); each
    partition of the dead-letter topic gets its tombstone. Compaction then removes
    every record of the document from the disks (docs/operating.md, "Erasure").
    Erasing twice is harmless.
    """

    def __init__(
        self, producer: KafkaProducer, *, documents_topic: str, dlq_topic: str, audit_topic: str
    ):
        self._producer = producer
        self._documents = documents_topic
        self._dlq = dlq_topic
        self._audit = audit_topic

    async def erase(self, tenant: str, doc_id: str, *, requester: Requester) -> ErasureRecord:
        """Erase one document; returns the audit record, written once every tombstone
        is acknowledged. Raises ``UpstreamUnavailable`` if Kafka refuses a record."""
        erasure_id = uuid.uuid4().hex
        with _tracer.start_as_current_span("erase", kind=trace.SpanKind.PRODUCER) as span:
            span.set_attribute("headwater.erasure.id", erasure_id)
            span.set_attribute("messaging.kafka.message.key", document_key(tenant, doc_id))
            home = await self._tombstone_documents(tenant, doc_id, erasure_id)
            await self._tombstone_dead_letters(tenant, doc_id, erasure_id)
            record = ErasureRecord(
                erasure_id=erasure_id,
                tenant=tenant,
                doc_id=doc_id,
                requested_by=requester.user_id,
                key_id=requester.key_id,
                via=requester.via,
                reference=requester.reference,
                documents_partition=home.partition,
                documents_offset=home.offset,
            )
            await self._producer.send_async(
                self._audit, key=f"{tenant}/{erasure_id}".encode(), value=record.to_json()
            )
            return record

    async def _tombstone_documents(self, tenant: str, doc_id: str, erasure_id: str) -> Delivered:
        count = await asyncio.to_thread(self._producer.partitions, self._documents)
        keys = _document_keys(tenant, doc_id)
        home = key_partition(keys[0], count)
        mark = [(ERASURE_HEADER, erasure_id.encode()), *inject_headers()]
        sweep = [(SWEEP_HEADER, erasure_id.encode())]
        sends = [
            self._producer.send_async(
                self._documents, key=keys[0], value=None, headers=mark, partition=home
            ),
            self._producer.send_async(
                self._documents, key=keys[1], value=None, headers=sweep, partition=home
            ),
        ]
        sends += [
            self._producer.send_async(
                self._documents, key=key, value=None, headers=sweep, partition=partition
            )
            for partition in range(count)
            if partition != home
            for key in keys
        ]
        delivered = await asyncio.gather(*sends)
        return delivered[0]

    async def _tombstone_dead_letters(self, tenant: str, doc_id: str, erasure_id: str) -> None:
        count = await asyncio.to_thread(self._producer.partitions, self._dlq)
        key = document_key(tenant, doc_id).encode()
        headers: Sequence[tuple[str, bytes]] = [(SWEEP_HEADER, erasure_id.encode())]
        await asyncio.gather(
            *(
                self._producer.send_async(
                    self._dlq, key=key, value=None, headers=headers, partition=partition
                )
                for partition in range(count)
            )
        )
