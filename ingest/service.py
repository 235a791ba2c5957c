"""Handles raw Kafka messages: validate, apply (with retries), or dead-letter with the reason.

Pure logic over two Protocols (the writer and the dead-letter sink), so the faust
adapter stays thin and this is unit-testable without a broker. faust acks a message
when the agent moves on, even if it raised; so nothing here raises: every message
ends applied, skipped as stale, or acknowledged by the DLQ.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, Protocol

from opentelemetry import context, trace
from pydantic import ValidationError

from core.errors import UpstreamUnavailable
from core.metrics import (
    INGEST_CHUNKS,
    INGEST_DLQ,
    INGEST_DLQ_SEND_FAILURES,
    INGEST_EVENTS,
    INGEST_FRESHNESS,
)
from core.telemetry import extract_context
from ingest.models import DocumentEvent
from ingest.writer import WriteResult

_log = logging.getLogger(__name__)
_tracer = trace.get_tracer("headwater.ingest")

Outcome = Literal["applied", "stale", "dead_lettered"]

# Failures of the infrastructure rather than of one event: retried with backoff while
# they last (up to ``RetryPolicy.transient_budget_s``), never counted against an event.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    UpstreamUnavailable,
    ConnectionError,
    TimeoutError,
)


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


@dataclass(frozen=True)
class RetryPolicy:
    """How long the worker keeps trying before it dead-letters an event."""

    max_attempts: int = 5
    base_delay_s: float = 0.2
    max_delay_s: float = 5.0
    transient_budget_s: float = 1800.0

    def delay_s(self, attempt: int) -> float:
        return float(min(self.max_delay_s, self.base_delay_s * 2 ** max(0, attempt - 1)))


class EventWriter(Protocol):
    async def apply_batch(
        self, items: Sequence[tuple[DocumentEvent, context.Context]]
    ) -> list[WriteResult]: ...


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


@dataclass
class _Item:
    message: RawMessage
    event: DocumentEvent
    span: trace.Span


class DocumentEventHandler:
    """Applies valid document events; dead-letters invalid ones and ones that keep failing.

    Returns only once every message of a batch is applied, skipped as stale or
    acknowledged by the DLQ, so the caller may then commit their offsets.
    """

    def __init__(
        self,
        *,
        writer: EventWriter,
        dead_letters: DeadLetterSink,
        retry: RetryPolicy = RetryPolicy(),
    ):
        self._writer = writer
        self._dead_letters = dead_letters
        self._retry = retry

    async def handle(self, message: RawMessage) -> Outcome:
        (outcome,) = await self.handle_batch([message])
        return outcome

    async def handle_batch(self, messages: Sequence[RawMessage]) -> list[Outcome]:
        outcomes: dict[int, Outcome] = {}
        items: dict[int, _Item] = {}
        for index, message in enumerate(messages):
            span = _process_span(message)
            event, problem = parse_event(message)
            if event is None:
                outcomes[index] = await self._dead_letter(
                    span, message, problem, error_type="validation", op="unknown"
                )
                span.end()
                continue
            span.set_attribute("headwater.document.op", event.op)
            span.set_attribute("headwater.document.version", event.version)
            items[index] = _Item(message, event, span)
        if items:
            outcomes.update(await self._apply(items))
        for index, item in items.items():
            _record(item, outcomes[index])
            item.span.end()
        return [outcomes[index] for index in range(len(messages))]

    async def _apply(self, items: dict[int, _Item]) -> dict[int, Outcome]:
        """Apply a batch; if it fails, isolate the failing event(s) one by one."""
        try:
            return await self._try(items)
        except Exception as exc:  # noqa: BLE001 - isolate the failing event, then retry or DLQ it
            if len(items) > 1:
                _log.warning("batch of %d failed (%s); applying one by one", len(items), exc)
                isolated: dict[int, Outcome] = {}
                for index, item in items.items():
                    isolated.update(await self._apply_one(index, item))
                return isolated
            ((index, item),) = items.items()
            return await self._apply_one(index, item, first_error=exc)

    async def _try(self, items: dict[int, _Item]) -> dict[int, Outcome]:
        """One attempt (outages are retried inside it); raises what is not an outage."""
        batch = [(item.event, trace.set_span_in_context(item.span)) for item in items.values()]
        results = await self._transient_retry(lambda: self._writer.apply_batch(batch))
        for item, result in zip(items.values(), results, strict=True):
            item.span.set_attribute("headwater.chunk.count", result.chunks_embedded)
            if result.outcome == "applied":
                INGEST_CHUNKS.inc(result.chunks_embedded)
        return {index: result.outcome for index, result in zip(items, results, strict=True)}

    async def _apply_one(
        self, index: int, item: _Item, first_error: Exception | None = None
    ) -> dict[int, Outcome]:
        """Retry one event up to ``max_attempts`` times, then dead-letter it."""
        error = first_error
        attempt = 1 if first_error else 0
        while attempt < self._retry.max_attempts:
            if error is not None:
                await asyncio.sleep(self._retry.delay_s(attempt))
            attempt += 1
            try:
                return await self._try({index: item})
            except Exception as exc:  # noqa: BLE001 - counted, then retried or dead-lettered
                error = exc
                INGEST_EVENTS.labels(item.event.op, "retried").inc()
        if error is not None:
            item.span.record_exception(error)
        reason = f"failed after {attempt} attempts: {error}"
        kind = type(error).__name__ if error else "unknown"
        outcome = await self._dead_letter(
            item.span, item.message, reason, error_type=kind, op=item.event.op
        )
        return {index: outcome}

    async def _transient_retry(
        self, attempt: Callable[[], Awaitable[list[WriteResult]]]
    ) -> list[WriteResult]:
        started = time.monotonic()
        tries = 0
        while True:
            try:
                return await attempt()
            except TRANSIENT_ERRORS as exc:
                tries += 1
                if time.monotonic() - started > self._retry.transient_budget_s:
                    raise
                delay = self._retry.delay_s(tries)
                _log.warning("store or model unavailable (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)

    async def _dead_letter(
        self, span: trace.Span, message: RawMessage, reason: str, *, error_type: str, op: str
    ) -> Outcome:
        span.set_status(trace.Status(trace.StatusCode.ERROR, error_type))
        span.set_attribute("error.type", error_type)
        _log.warning(
            "dead-lettering %s[%s]@%s: %s", message.topic, message.partition, message.offset, reason
        )
        await self._send_dead_letter(message, reason=reason, error_type=error_type)
        INGEST_DLQ.labels(error_type).inc()
        INGEST_EVENTS.labels(op, "dead_lettered").inc()
        return "dead_lettered"

    async def _send_dead_letter(self, message: RawMessage, *, reason: str, error_type: str) -> None:
        """Send to the DLQ, retried with backoff until the DLQ acknowledges it: the event is
        never skipped, and while the DLQ is unreachable the batch is not acknowledged, so
        its offsets are not committed (consumption stops there; lag and the failure counter
        and error logs say so) and a restart re-delivers it."""
        tries = 0
        while True:
            try:
                await self._dead_letters.send(message, reason=reason, error_type=error_type)
                return
            except Exception as exc:  # noqa: BLE001 - never skip the event: retry until sent
                tries += 1
                INGEST_DLQ_SEND_FAILURES.inc()
                delay = self._retry.delay_s(tries)
                _log.error(
                    "the dead-letter topic refused %s[%s]@%s (%s); retrying in %.1fs; its "
                    "offset is not committed meanwhile",
                    message.topic,
                    message.partition,
                    message.offset,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)


def _process_span(message: RawMessage) -> trace.Span:
    span = _tracer.start_span(
        f"process {message.topic}",
        context=extract_context(message.headers),
        kind=trace.SpanKind.CONSUMER,
    )
    span.set_attribute("messaging.system", "kafka")
    span.set_attribute("messaging.operation.type", "process")
    span.set_attribute("messaging.destination.name", message.topic)
    span.set_attribute("messaging.destination.partition.id", str(message.partition))
    span.set_attribute("messaging.kafka.offset", message.offset)
    if message.key is not None:
        span.set_attribute("messaging.kafka.message.key", message.key.decode("utf-8", "replace"))
    return span


def _record(item: _Item, outcome: Outcome) -> None:
    item.span.set_attribute("headwater.ingest.outcome", outcome)
    if outcome == "dead_lettered":
        return
    INGEST_EVENTS.labels(item.event.op, outcome).inc()
    if outcome == "applied" and item.message.timestamp_s:
        INGEST_FRESHNESS.observe(max(0.0, time.time() - item.message.timestamp_s))


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
