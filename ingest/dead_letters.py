"""Dead letters of the documents topic: read them back with their reasons, and replay one
or many to the documents topic under their original key.

The ``headwater dlq`` commands (operators, every tenant) and the admin API (one tenant's
letters, ``api.operations``) both use these functions, so a replay is the same act
whichever door it came through.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from core.kafka import KafkaProducer, Record, key_partition, read_to_end
from ingest.messages import SOURCE_KEY_HEADER, SOURCE_TOMBSTONE_HEADER
from ingest.models import parse_record_key

# The longest reason shown; the header keeps the whole message.
REASON_CHARS = 500
# A letter whose message named no document is filed under ``unattributed/{topic}/...``
# (``ingest.messages.dead_letter_key``): it belongs to no tenant (operators see it with
# ``headwater dlq``), even to one that calls itself so.
UNATTRIBUTED = "unattributed"


@dataclass(frozen=True)
class DeadLetter:
    """One dead-lettered message, as an operator reads it (never its value's text)."""

    partition: int
    offset: int
    key: str  # the document key it is filed under (else ``unattributed/...``)
    source_key: str  # the key it had on the documents topic (x-source-key)
    tenant: str | None  # None: it names no document (unattributed)
    doc_id: str | None
    error_type: str
    reason: str
    failed_at: str
    tombstone: bool

    @classmethod
    def of(cls, record: Record) -> DeadLetter:
        headers = record.headers
        named = parse_record_key(record.key)
        if named is not None and named.tenant == UNATTRIBUTED:
            named = None
        return cls(
            partition=record.partition,
            offset=record.offset,
            key=(record.key or b"").decode("utf-8", "replace"),
            source_key=headers.get(SOURCE_KEY_HEADER, record.key or b"").decode("utf-8", "replace"),
            tenant=named.tenant if named else None,
            doc_id=named.doc_id if named else None,
            error_type=headers.get("x-error-type", b"").decode("utf-8", "replace"),
            reason=headers.get("x-error", b"").decode("utf-8", "replace")[:REASON_CHARS],
            failed_at=headers.get("x-failed-at", b"").decode("utf-8", "replace"),
            tombstone=headers.get(SOURCE_TOMBSTONE_HEADER) == b"true",
        )


def dead_letters(bootstrap: str, *, topic: str, tenant: str | None = None) -> Iterator[Record]:
    """The dead letters on ``topic`` (tombstones skipped: an erasure's or the seal), of
    ``tenant`` only when given (a letter whose key names no document belongs to none)."""
    for record in read_to_end(bootstrap, topic=topic):
        if record.value is None:
            continue
        if tenant is not None and DeadLetter.of(record).tenant != tenant:
            continue
        yield record


def find_dead_letter(bootstrap: str, *, topic: str, partition: int, offset: int) -> Record | None:
    """The dead letter at ``partition``/``offset``, or None."""
    for record in dead_letters(bootstrap, topic=topic):
        if record.partition == partition and record.offset == offset:
            return record
    return None


def replay(producer: KafkaProducer, record: Record, *, documents_topic: str) -> int:
    """Send ``record`` back to ``documents_topic`` under its original key, to its
    document's partition (a tombstone as a tombstone), with its original headers (trace
    context) but not the DLQ's own; returns the partition it went to. A message that
    fails again is dead-lettered again, with its reason."""
    headers = [(k, v) for k, v in record.headers.items() if not k.startswith("x-")]
    original = record.headers.get(SOURCE_KEY_HEADER, record.key)
    tombstone = record.headers.get(SOURCE_TOMBSTONE_HEADER) == b"true"
    delivered = producer.send(
        documents_topic,
        key=original,
        value=None if tombstone else record.value,
        headers=headers,
        partition=home_partition(producer, documents_topic, original),
    )
    return delivered.partition


def home_partition(producer: KafkaProducer, topic: str, key: bytes | None) -> int | None:
    """The partition of the document ``key`` names (an ACL key's too), else the
    partitioner's choice."""
    named = parse_record_key(key)
    if named is None:
        return None
    return key_partition(named.document_key.encode(), producer.partitions(topic))
