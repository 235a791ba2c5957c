"""Odd records on the compacted documents topic: tombstones, the seal, erasure sweeps, ACL
keys, keys that name no document. Each ends applied, ignored or dead-lettered, never
unacknowledged; dead letters are keyed by the document they belong to."""

from __future__ import annotations

import json

from ingest.messages import (
    SOURCE_KEY_HEADER,
    SOURCE_TOMBSTONE_HEADER,
    RawMessage,
    dead_letter_headers,
    dead_letter_key,
    parse_event,
)
from ingest.models import (
    ERASURE_HEADER,
    SEAL_KEY,
    SWEEP_HEADER,
    DocumentEvent,
    Tombstone,
    acl_key,
    parse_record_key,
)
from ingest.service import DocumentEventHandler, RetryPolicy
from tests.unit.ingest.test_service import EVENT, RecordingSink, RecordingWriter

FAST = RetryPolicy(max_attempts=2, base_delay_s=0, max_delay_s=0, transient_budget_s=5)


def _raw(key: bytes | None, value: bytes | None, *headers: tuple[str, bytes]) -> RawMessage:
    return RawMessage("headwater.documents.v1", 1, 7, key, value, tuple(headers))


async def test_a_tombstone_of_a_document_key_is_applied_as_its_deletion() -> None:
    writer, sink = RecordingWriter(), RecordingSink()
    handler = DocumentEventHandler(writer=writer, dead_letters=sink)
    plain = await handler.handle(_raw(b"acme/d1", None))
    erasure = await handler.handle(_raw(b"acme/d/2", None, (ERASURE_HEADER, b"e-1")))
    assert (plain, erasure) == ("applied", "applied")
    assert writer.applied == [
        Tombstone("acme", "d1"),
        Tombstone("acme", "d/2", erasure_id="e-1"),
    ]
    assert sink.sent == []


async def test_records_with_nothing_to_apply_are_ignored_not_dead_lettered() -> None:
    writer, sink = RecordingWriter(), RecordingSink()
    handler = DocumentEventHandler(writer=writer, dead_letters=sink)
    odd = [
        _raw(SEAL_KEY, None),
        _raw(b"acme/d1", None, (SWEEP_HEADER, b"e-1")),
        _raw(acl_key("acme", "d1").encode(), None),
        _raw(b"no-slash-here", None),
        _raw(None, None),
        _raw(b"\xff\xfe/d1", None),
    ]
    assert await handler.handle_batch(odd) == ["ignored"] * len(odd)
    assert writer.calls == 0 and sink.sent == []


async def test_a_batch_keeps_the_order_of_events_and_tombstones() -> None:
    writer, sink = RecordingWriter(), RecordingSink()
    handler = DocumentEventHandler(writer=writer, dead_letters=sink)
    upsert = json.dumps(EVENT).encode()
    outcomes = await handler.handle_batch(
        [_raw(b"acme/d1", upsert), _raw(SEAL_KEY, None), _raw(b"acme/d1", None)]
    )
    assert outcomes == ["applied", "ignored", "applied"]
    assert [type(change).__name__ for change in writer.applied] == ["DocumentEvent", "Tombstone"]


async def test_a_tombstone_that_keeps_failing_is_dead_lettered_as_a_tombstone() -> None:
    writer, sink = RecordingWriter(poison=frozenset({"d1"})), RecordingSink()
    handler = DocumentEventHandler(writer=writer, dead_letters=sink, retry=FAST)
    message = _raw(b"acme/d1", None)
    assert await handler.handle(message) == "dead_lettered"
    ((sent, _, _),) = sink.sent
    headers = dict(dead_letter_headers(sent, reason="r", error_type="ValueError"))
    assert headers[SOURCE_TOMBSTONE_HEADER] == b"true"
    assert headers[SOURCE_KEY_HEADER] == b"acme/d1"
    assert dead_letter_key(sent) == b"acme/d1"


def test_dead_letters_are_keyed_by_their_document_never_null() -> None:
    named = json.dumps({"tenant": "acme", "doc_id": "x/1", "version": "not a number"})
    assert dead_letter_key(_raw(b"wrong/key", named.encode())) == b"acme/x/1"
    assert dead_letter_key(_raw(acl_key("acme", "d1").encode(), b"{oops")) == b"acme/d1"
    assert dead_letter_key(_raw(None, b"{oops")) == b"unattributed/headwater.documents.v1/1/7"
    assert dead_letter_key(_raw(b"junk", b"[1, 2]")) == b"unattributed/headwater.documents.v1/1/7"
    bad_tenant = json.dumps({"tenant": "has space", "doc_id": "d"}).encode()
    assert dead_letter_key(_raw(b"acme/d", bad_tenant)) == b"acme/d"


def test_acl_changes_are_keyed_apart_from_their_document() -> None:
    acl = DocumentEvent.model_validate({**EVENT, "op": "acl", "text": None})
    upsert = DocumentEvent.model_validate(EVENT)
    assert (upsert.record_key, acl.record_key) == ("acme/d1", "acl acme/d1")
    assert parse_event(_raw(b"acl acme/d1", acl.to_json()))[0] == acl
    # Keyed by the document, as before ACL keys existed: still applied.
    assert parse_event(_raw(b"acme/d1", acl.to_json()))[0] == acl
    event, problem = parse_event(_raw(b"acl acme/d1", upsert.to_json()))
    assert event is None and "'acme/d1'" in problem


def test_no_document_key_is_an_acl_key_or_the_seal() -> None:
    # A tenant never holds whitespace or '/', so the two key spaces cannot meet.
    for tenant, doc_id in [("acme", "d1"), ("acl", "acme/d1"), ("x", "acl acme/d1")]:
        document = parse_record_key(f"{tenant}/{doc_id}".encode())
        assert document is not None and document.kind == "document"
        assert (document.tenant, document.doc_id) == (tenant, doc_id)
        acl = parse_record_key(acl_key(tenant, doc_id).encode())
        assert acl is not None and (acl.kind, acl.tenant, acl.doc_id) == ("acl", tenant, doc_id)
    assert parse_record_key(SEAL_KEY) is None
    assert parse_record_key(b"acme/") is None
    assert parse_record_key(b"/d1") is None
