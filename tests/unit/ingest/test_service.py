"""The message handler: dead-letters what it cannot apply, continues the producer's trace."""

from __future__ import annotations

import json

from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from core.errors import UpstreamUnavailable
from core.telemetry import inject_headers
from ingest.models import DocumentEvent
from ingest.service import DocumentEventHandler, RawMessage, RetryPolicy
from ingest.writer import WriteResult

FAST = RetryPolicy(max_attempts=3, base_delay_s=0, max_delay_s=0, transient_budget_s=5)

EVENT = {
    "schema": "headwater.document/1",
    "op": "upsert",
    "tenant": "acme",
    "doc_id": "d1",
    "version": 1,
    "acl": {"groups": ["hr"]},
    "text": "hello",
}


class RecordingWriter:
    """Applies batches; ``failures`` are raised first, one per call; ``poison`` doc ids
    always fail."""

    def __init__(self, *failures: Exception, poison: frozenset[str] = frozenset()):
        self.applied: list[DocumentEvent] = []
        self.failures = list(failures)
        self.poison = poison
        self.calls = 0

    async def apply_batch(self, items):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        if any(event.doc_id in self.poison for event, _ in items):
            raise ValueError("cannot apply this document")
        self.applied.extend(event for event, _ in items)
        return [WriteResult("applied", 1) for _ in items]


class RecordingSink:
    def __init__(self) -> None:
        self.sent: list[tuple[RawMessage, str, str]] = []

    async def send(self, message: RawMessage, *, reason: str, error_type: str) -> None:
        self.sent.append((message, reason, error_type))


def _message(value: bytes | None, key: bytes | None = b"acme/d1", headers=()) -> RawMessage:  # type: ignore[no-untyped-def]
    return RawMessage("headwater.documents.v1", 2, 41, key, value, tuple(headers))


async def test_valid_event_is_applied() -> None:
    writer, sink = RecordingWriter(), RecordingSink()
    outcome = await DocumentEventHandler(writer=writer, dead_letters=sink).handle(
        _message(json.dumps(EVENT).encode())
    )
    assert outcome == "applied"
    assert [e.doc_id for e in writer.applied] == ["d1"]
    assert sink.sent == []


async def test_malformed_messages_go_to_the_dlq_with_a_reason() -> None:
    writer, sink = RecordingWriter(), RecordingSink()
    handler = DocumentEventHandler(writer=writer, dead_letters=sink)
    bad = [
        _message(b"{not json"),
        _message(b""),
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
    assert writer.applied == []


async def test_an_event_that_keeps_failing_is_dead_lettered_after_max_attempts() -> None:
    sink = RecordingSink()
    writer = RecordingWriter(poison=frozenset({"d1"}))
    handler = DocumentEventHandler(writer=writer, dead_letters=sink, retry=FAST)
    assert await handler.handle(_message(json.dumps(EVENT).encode())) == "dead_lettered"
    assert writer.calls == 3
    message, reason, kind = sink.sent[0]
    assert (kind, message.offset) == ("ValueError", 41)
    assert reason == "failed after 3 attempts: cannot apply this document"


async def test_store_outages_are_retried_not_dead_lettered() -> None:
    sink = RecordingSink()
    outage = [UpstreamUnavailable("store down")] * 6
    writer = RecordingWriter(*outage)
    handler = DocumentEventHandler(writer=writer, dead_letters=sink, retry=FAST)
    assert await handler.handle(_message(json.dumps(EVENT).encode())) == "applied"
    assert sink.sent == [] and [e.doc_id for e in writer.applied] == ["d1"]


async def test_a_poison_event_is_isolated_from_its_batch() -> None:
    sink = RecordingSink()
    writer = RecordingWriter(poison=frozenset({"bad"}))
    handler = DocumentEventHandler(writer=writer, dead_letters=sink, retry=FAST)
    events = [{**EVENT, "doc_id": doc} for doc in ("a", "bad", "b")]
    messages = [
        _message(json.dumps(e).encode(), key=f"acme/{e['doc_id']}".encode()) for e in events
    ]
    outcomes = await handler.handle_batch(messages)
    assert outcomes == ["applied", "dead_lettered", "applied"]
    assert [e.doc_id for e in writer.applied] == ["a", "b"]
    assert [m.key for m, _, _ in sink.sent] == [b"acme/bad"]


async def test_process_span_continues_the_producer_trace(spans: InMemorySpanExporter) -> None:
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("send headwater.documents.v1") as producer:
        headers = inject_headers()
    handler = DocumentEventHandler(writer=RecordingWriter(), dead_letters=RecordingSink())
    await handler.handle(_message(json.dumps(EVENT).encode(), headers=headers))
    (process,) = [
        s for s in spans.get_finished_spans() if s.name == "process headwater.documents.v1"
    ]
    assert process.context.trace_id == producer.get_span_context().trace_id
    assert (
        process.parent is not None and process.parent.span_id == producer.get_span_context().span_id
    )
    assert process.attributes["messaging.kafka.offset"] == 41


class FlakySink(RecordingSink):
    """Refuses the first ``failures`` sends (a DLQ outage)."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.tries = 0

    async def send(self, message: RawMessage, *, reason: str, error_type: str) -> None:
        self.tries += 1
        if self.tries <= self.failures:
            raise UpstreamUnavailable("Kafka did not acknowledge the message")
        await super().send(message, reason=reason, error_type=error_type)


async def test_a_failed_dead_letter_send_is_retried_never_raised_never_skipped() -> None:
    sink = FlakySink(failures=3)
    handler = DocumentEventHandler(writer=RecordingWriter(), dead_letters=sink, retry=FAST)
    assert await handler.handle(_message(b"{not json")) == "dead_lettered"
    assert sink.tries == 4 and len(sink.sent) == 1


async def test_while_the_dlq_is_down_the_handler_does_not_return() -> None:
    """Not returning is what keeps the offset uncommitted: the batch is never acked."""
    import asyncio

    import pytest

    sink = FlakySink(failures=10**9)
    handler = DocumentEventHandler(writer=RecordingWriter(), dead_letters=sink, retry=FAST)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(handler.handle(_message(b"{not json")), timeout=0.5)
    assert sink.tries > 1 and sink.sent == []
