"""The raw messages of the documents topic, and what each means: a document event, a
tombstone, or a record with nothing to apply (:class:`Skip`); and how the dead letter of
one is keyed and labelled. Pure functions over bytes.

A tombstone (null value) of a document key deletes the document whatever its version
(``ingest.models.Tombstone``). Dead letters are keyed by the document they belong to
(:func:`dead_letter_key`), so that an erasure's tombstone reaches them on the compacted
dead-letter topic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pydantic import ValidationError

from ingest.models import (
    ERASURE_HEADER,
    SEAL_KEY,
    SWEEP_HEADER,
    DocumentEvent,
    Tombstone,
    document_key,
    parse_record_key,
)

SOURCE_KEY_HEADER = "x-source-key"
SOURCE_TOMBSTONE_HEADER = "x-source-tombstone"


@dataclass(frozen=True)
class RawMessage:
    """A message as read from Kafka, before any parsing."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = field(default=())
    timestamp_s: float | None = None


def dead_letter_headers(
    message: RawMessage, *, reason: str, error_type: str
) -> list[tuple[str, bytes]]:
    """The DLQ headers of ARCHITECTURE.md, plus the original headers (trace context),
    the original key (``x-source-key``: the dead letter's own key is the document's) and,
    for a tombstone, ``x-source-tombstone`` (its dead letter's value is empty, not null:
    a null would be a tombstone on the dead-letter topic itself)."""
    original = [] if message.key is None else [(SOURCE_KEY_HEADER, message.key)]
    tombstone = [(SOURCE_TOMBSTONE_HEADER, b"true")] if message.value is None else []
    return [
        *message.headers,
        *original,
        *tombstone,
        ("x-error", reason.encode()[:4000]),
        ("x-error-type", error_type.encode()),
        ("x-source-topic", message.topic.encode()),
        ("x-source-partition", str(message.partition).encode()),
        ("x-source-offset", str(message.offset).encode()),
        ("x-failed-at", datetime.now(UTC).isoformat().encode()),
    ]


def dead_letter_key(message: RawMessage) -> bytes:
    """The key of a dead letter: the document key its value names, else the one its
    record key names (an ACL key names its document's), else a key of its own (its
    source position): never null, which the compacted dead-letter topic refuses."""
    named = _named_document(message.value)
    if named is None:
        parsed = parse_record_key(message.key)
        named = parsed.document_key if parsed is not None else None
    if named is None:
        named = f"unattributed/{message.topic}/{message.partition}/{message.offset}"
    return named.encode()


def _named_document(value: bytes | None) -> str | None:
    """The document key a (possibly invalid) event names, if it names one plainly."""
    try:
        data = json.loads(value) if value else None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    tenant, doc_id = data.get("tenant"), data.get("doc_id")
    if not isinstance(tenant, str) or not isinstance(doc_id, str):
        return None
    parsed = parse_record_key(document_key(tenant, doc_id).encode())
    return parsed.document_key if parsed is not None else None


@dataclass(frozen=True)
class Skip:
    """A record with nothing to apply, and why."""

    reason: str
    expected: bool = True  # false: a record no Headwater producer writes (logged)


def parse_tombstone(message: RawMessage) -> Tombstone | Skip:
    """What a null-valued record means (see the module docstring)."""
    if message.key == SEAL_KEY:
        return Skip("seal")
    headers = dict(message.headers)
    parsed = parse_record_key(message.key)
    if parsed is None:
        return Skip("tombstone of a key that names no document", expected=False)
    if parsed.kind == "acl":
        return Skip("tombstone of an ACL key (the document key decides)")
    if SWEEP_HEADER in headers:
        return Skip("erasure sweep")
    erasure = headers.get(ERASURE_HEADER)
    return Tombstone(
        parsed.tenant,
        parsed.doc_id,
        erasure_id=erasure.decode("utf-8", "replace") if erasure is not None else None,
    )


def parse_message(message: RawMessage) -> DocumentEvent | Tombstone | Skip | str:
    """What ``message`` means: a change to apply, a record with nothing to apply, or (a
    string) why it is invalid, for its dead letter."""
    if message.value is None:
        return parse_tombstone(message)
    event, problem = parse_event(message)
    return problem if event is None else event


def parse_event(message: RawMessage) -> tuple[DocumentEvent | None, str]:
    """The validated event, or None and a reason a connector author can act on."""
    if not message.value:
        return None, "empty message value; expected a headwater.document/1 JSON object"
    try:
        event = DocumentEvent.model_validate_json(message.value)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'value'}: {err['msg']}"
            for err in exc.errors(include_url=False)
        )
        return None, f"invalid document event: {problems}"
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return None, f"value is not JSON: {exc}"
    expected = event.record_key.encode()
    # An ACL change keyed by its document (as before ACL keys existed) is still applied.
    legacy = event.op == "acl" and message.key == event.key.encode()
    if message.key != expected and not legacy:
        shown = message.key.decode("utf-8", "replace") if message.key else "none"
        form = "acl {tenant}/{doc_id}" if event.op == "acl" else "{tenant}/{doc_id}"
        return None, f"message key {shown!r} must be {event.record_key!r} ({form})"
    return event, ""
