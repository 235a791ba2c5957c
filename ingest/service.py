"""Handles one raw Kafka message: validate, apply, or dead-letter with the reason.

Pure logic over two Protocols (the writer and the dead-letter sink), so the faust
adapter stays thin and this is unit-testable without a broker.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, Protocol

from opentelemetry import trace
from pydantic import ValidationError

from core.telemetry import extract_context
from ingest.models import DocumentEvent

_log = logging.getLogger(__name__)
_tracer = trace.get_tracer("headwater.ingest")

Outcome = Literal["applied", "dead_lettered"]


@dataclass(frozen=True)
class RawMessage:
    """A message as read from Kafka, before any parsing."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = field(default=())


class EventApplier(Protocol):
    async def apply(self, event: DocumentEvent) -> int: ...


class DeadLetterSink(Protocol):
    async def send(self, message: RawMessage, *, reason: str, error_type: str) -> None: ...


def dead_letter_headers(
    message: RawMessage, *, reason: str, error_type: str
) -> list[tuple[str, bytes]]:
    """The DLQ headers of ARCHITECTURE.md, plus the original headers (trace context)."""
    return [
        *message.headers,
        ("x-error", reason.encode()[:4000]),
        ("x-error-type", error_type.encode()),
        ("x-source-topic", message.topic.encode()),
        ("x-source-partition", str(message.partition).encode()),
        ("x-source-offset", str(message.offset).encode()),
        ("x-failed-at", datetime.now(UTC).isoformat().encode()),
    ]


class DocumentEventHandler:
    """Applies valid document events; sends every other message to the DLQ."""

    def __init__(self, *, applier: EventApplier, dead_letters: DeadLetterSink):
        self._applier = applier
        self._dead_letters = dead_letters

    async def handle(self, message: RawMessage) -> Outcome:
        parent = extract_context(message.headers)
        with _tracer.start_as_current_span(
            f"process {message.topic}", context=parent, kind=trace.SpanKind.CONSUMER
        ) as span:
            span.set_attribute("messaging.system", "kafka")
            span.set_attribute("messaging.operation.type", "process")
            span.set_attribute("messaging.destination.name", message.topic)
            span.set_attribute("messaging.destination.partition.id", str(message.partition))
            span.set_attribute("messaging.kafka.offset", message.offset)
            if message.key is not None:
                span.set_attribute(
                    "messaging.kafka.message.key", message.key.decode("utf-8", "replace")
                )
            event, problem = parse_event(message)
            if event is None:
                return await self._dead_letter(span, message, problem, "validation")
            span.set_attribute("headwater.document.op", event.op)
            span.set_attribute("headwater.document.version", event.version)
            try:
                chunks = await self._applier.apply(event)
            except Exception as exc:  # noqa: BLE001 - any failure must reach the DLQ, not vanish
                _log.exception("applying %s v%s failed", event.key, event.version)
                span.record_exception(exc)
                return await self._dead_letter(span, message, str(exc), type(exc).__name__)
            span.set_attribute("headwater.chunk.count", chunks)
            return "applied"

    async def _dead_letter(
        self, span: trace.Span, message: RawMessage, reason: str, error_type: str
    ) -> Outcome:
        span.set_status(trace.Status(trace.StatusCode.ERROR, error_type))
        span.set_attribute("error.type", error_type)
        _log.warning(
            "dead-lettering %s[%s]@%s: %s", message.topic, message.partition, message.offset, reason
        )
        await self._dead_letters.send(message, reason=reason, error_type=error_type)
        return "dead_lettered"


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
    expected = event.key.encode()
    if message.key != expected:
        shown = message.key.decode("utf-8", "replace") if message.key else "none"
        return None, f"message key {shown!r} must be {event.key!r} ({{tenant}}/{{doc_id}})"
    return event, ""
