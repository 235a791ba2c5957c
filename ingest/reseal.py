"""Re-seals a documents topic written before ACL keys, before it is compacted.

Before ACL keys (``ingest.models``), an ``acl`` event was keyed by its document: where
one is a document's last record, compaction would keep it alone and drop the text, and
a replay could not rebuild the document. For each such document this re-publishes, in
its partition and in this order, its last upsert (as it was) and that ACL event under
the ACL key. The worker skips both as stale (their versions are applied already), and
compaction then keeps the text. ``headwater topics migrate`` runs it before it changes
the topic's cleanup policy; it is idempotent (a re-sealed document's last record is an
upsert).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import ValidationError

from core.kafka import KafkaProducer, Record, read_to_end
from ingest.models import DocumentEvent, parse_record_key


@dataclass
class ResealReport:
    """Documents re-sealed (or, in a dry run, to re-seal), and those that cannot be: their
    last upsert has already left the topic (its retention), so only their connector can
    publish them again."""

    resealed: list[str] = field(default_factory=list)
    unrecoverable: list[str] = field(default_factory=list)


@dataclass
class _Last:
    """A document key's last record, and where its last upsert is."""

    legacy_acl: Record | None = None
    upsert: tuple[int, int] | None = None


def reseal_legacy_acl_events(
    bootstrap: str, *, topic: str, producer: KafkaProducer | None
) -> ResealReport:
    """Re-seal every document whose last record is an ACL change keyed by the document;
    ``producer`` None: a dry run (report only). Reads the topic twice."""
    last = _scan(bootstrap, topic)
    report = ResealReport()
    wanted: dict[tuple[int, int], bytes] = {}
    for key, seen in last.items():
        if seen.legacy_acl is None:
            continue
        if seen.upsert is None:
            report.unrecoverable.append(key.decode())
        else:
            wanted[seen.upsert] = key
    upserts = {
        (record.partition, record.offset): record
        for record in (read_to_end(bootstrap, topic=topic) if wanted else ())
        if (record.partition, record.offset) in wanted
    }
    for position, key in sorted(wanted.items(), key=lambda item: item[1]):
        acl = last[key].legacy_acl
        upsert = upserts.get(position)
        if acl is None or upsert is None:  # compacted away between the two reads
            report.unrecoverable.append(key.decode())
            continue
        if producer is not None:
            _republish(producer, topic, upsert, acl)
        report.resealed.append(key.decode())
    return report


def _scan(bootstrap: str, topic: str) -> dict[bytes, _Last]:
    last: dict[bytes, _Last] = {}
    for record in read_to_end(bootstrap, topic=topic):
        parsed = parse_record_key(record.key)
        if record.key is None or parsed is None or parsed.kind != "document":
            continue
        seen = last.setdefault(record.key, _Last())
        op = _op(record)
        seen.legacy_acl = record if op == "acl" else None
        if op == "upsert":
            seen.upsert = (record.partition, record.offset)
        elif op in ("delete", "tombstone"):
            seen.upsert = None
    return {key: seen for key, seen in last.items() if seen.legacy_acl or seen.upsert}


def _op(record: Record) -> str | None:
    if record.value is None:
        return "tombstone"
    try:
        return DocumentEvent.model_validate_json(record.value).op
    except ValidationError:
        return None


def _republish(producer: KafkaProducer, topic: str, upsert: Record, acl: Record) -> None:
    """The upsert, then the ACL change under its ACL key, in their partition, in order."""
    event = DocumentEvent.model_validate_json(acl.value or b"")
    producer.send(
        topic,
        key=upsert.key,
        value=upsert.value,
        headers=list(upsert.headers.items()),
        partition=upsert.partition,
    )
    producer.send(
        topic,
        key=event.record_key.encode(),
        value=acl.value,
        headers=list(acl.headers.items()),
        partition=acl.partition,
    )
