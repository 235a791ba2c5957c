"""The message handler: dead-letters what it cannot apply, continues the producer's trace."""

from __future__ import annotations

import json

from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from core.telemetry import inject_headers
from ingest.models import DocumentEvent
from ingest.service import DocumentEventHandler, RawMessage

EVENT = {
    "schema": "headwater.document/1",
    "op": "upsert",
    "tenant": "acme",
    "doc_id": "d1",
    "version": 1,
    "acl": {"groups": ["hr"]},
    "text": "hello",
}


class RecordingApplier:
    def __init__(self, fail: Exception | None = None):
        self.applied: list[DocumentEvent] = []
        self.fail = fail

    async def apply(self, event: DocumentEvent) -> int:
        if self.fail:
            raise self.fail
        self.applied.append(event)
        return 1


class RecordingSink:
    def __init__(self) -> None:
        self.sent: list[tuple[RawMessage, str, str]] = []

    async def send(self, message: RawMessage, *, reason: str, error_type: str) -> None:
        self.sent.append((message, reason, error_type))


def _message(value: bytes | None, key: bytes | None = b"acme/d1", headers=()) -> RawMessage:  # type: ignore[no-untyped-def]
    return RawMessage("headwater.documents.v1", 2, 41, key, value, tuple(headers))


async def test_valid_event_is_applied() -> None:
    applier, sink = RecordingApplier(), RecordingSink()
    outcome = await DocumentEventHandler(applier=applier, dead_letters=sink).handle(
        _message(json.dumps(EVENT).encode())
    )
    assert outcome == "applied"
    assert [e.doc_id for e in applier.applied] == ["d1"]
    assert sink.sent == []


async def test_malformed_messages_go_to_the_dlq_with_a_reason() -> None:
    applier, sink = RecordingApplier(), RecordingSink()
    handler = DocumentEventHandler(applier=applier, dead_letters=sink)
    bad = [
        _message(b"{not json"),
        _message(None),
        _message(json.dumps({**EVENT, "op": "merge"}).encode()),
        _message(json.dumps(EVENT).encode(), key=b"acme/other"),
    ]
    for message in bad:
        assert await handler.handle(message) == "dead_lettered"
    reasons = [reason for _, reason, _ in sink.sent]
    assert "invalid document event" in reasons[0]
    assert "empty message value" in reasons[1]
    assert "op" in reasons[2]
    assert "'acme/d1'" in reasons[3]
    assert all(kind == "validation" for _, _, kind in sink.sent)
    assert applier.applied == []


async def test_a_failure_while_applying_is_dead_lettered_not_dropped() -> None:
    sink = RecordingSink()
    handler = DocumentEventHandler(
        applier=RecordingApplier(RuntimeError("store down")), dead_letters=sink
    )
    assert await handler.handle(_message(json.dumps(EVENT).encode())) == "dead_lettered"
    assert sink.sent[0][1:] == ("store down", "RuntimeError")


async def test_process_span_continues_the_producer_trace(spans: InMemorySpanExporter) -> None:
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("send headwater.documents.v1") as producer:
        headers = inject_headers()
    handler = DocumentEventHandler(applier=RecordingApplier(), dead_letters=RecordingSink())
    await handler.handle(_message(json.dumps(EVENT).encode(), headers=headers))
    (process,) = [
        s for s in spans.get_finished_spans() if s.name == "process headwater.documents.v1"
    ]
    assert process.context.trace_id == producer.get_span_context().trace_id
    assert (
        process.parent is not None and process.parent.span_id == producer.get_span_context().span_id
    )
    assert process.attributes["messaging.kafka.offset"] == 41
