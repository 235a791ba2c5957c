"""Handles raw Kafka messages: validate, apply (with retries), or dead-letter with the reason.

Pure logic over two Protocols (the writer and the dead-letter sink), so the faust
adapter stays thin and this is unit-testable without a broker. faust acks a message
when the agent moves on, even if it raised; so nothing here raises: every message
ends applied, skipped as stale, ignored (a record with nothing to apply: the seal, an
erasure's sweep, an ACL key's tombstone, a tombstone of a key that names no document)
or acknowledged by the DLQ. What a message means is ``ingest.messages``'.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from opentelemetry import context, trace

from core.errors import UpstreamUnavailable
from core.metrics import (
    INGEST_CHUNKS,
    INGEST_DLQ,
    INGEST_DLQ_SEND_FAILURES,
    INGEST_EVENTS,
    INGEST_FRESHNESS,
)
from core.telemetry import extract_context
from ingest.messages import RawMessage, Skip, parse_message
from ingest.models import DocumentEvent, Tombstone
from ingest.writer import WriteResult

_log = logging.getLogger(__name__)
_tracer = trace.get_tracer("headwater.ingest")

Outcome = Literal["applied", "stale", "ignored", "dead_lettered"]
Change = DocumentEvent | Tombstone

# Failures of the infrastructure rather than of one event: retried with backoff while
# they last (up to ``RetryPolicy.transient_budget_s``), never counted against an event.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    UpstreamUnavailable,
    ConnectionError,
    TimeoutError,
)


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
        self, items: Sequence[tuple[Change, context.Context]]
    ) -> list[WriteResult]: ...


class DeadLetterSink(Protocol):
    async def send(self, message: RawMessage, *, reason: str, error_type: str) -> None: ...


@dataclass
class _Item:
    message: RawMessage
    event: Change
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
            change = parse_message(message)
            if isinstance(change, Skip):
                outcomes[index] = _skipped(message, change)
                continue
            span = _process_span(message)
            if isinstance(change, str):  # why it is invalid
                outcomes[index] = await self._dead_letter(
                    span, message, change, error_type="validation", op="unknown"
                )
                span.end()
                continue
            span.set_attribute("headwater.document.op", change.op)
            if isinstance(change, DocumentEvent):
                span.set_attribute("headwater.document.version", change.version)
            items[index] = _Item(message, change, span)
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


def _skipped(message: RawMessage, skip: Skip) -> Outcome:
    INGEST_EVENTS.labels("tombstone", "ignored").inc()
    if not skip.expected:
        _log.warning(
            "ignored %s[%s]@%s: %s", message.topic, message.partition, message.offset, skip.reason
        )
    return "ignored"


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
    if outcome == "applied" and item.message.timestamp_s and item.event.op != "tombstone":
        INGEST_FRESHNESS.observe(max(0.0, time.time() - item.message.timestamp_s))
