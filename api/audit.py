"""The audit trail: one record per answered request on ``headwater.audit.v1``.

Who asked, which chunks (doc_id, version, chunk_no) were served, route, model, tokens,
latency and trace id; never the prompt or document text. Keyed ``{tenant}/{request_id}``.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Literal

from opentelemetry import trace
from pydantic import BaseModel, Field

from acl.models import Principal
from core.kafka import Delivered, KafkaProducer
from core.metrics import AUDIT_FAILURES
from retrieval.schema import Hit

_log = logging.getLogger(__name__)


class ServedChunk(BaseModel):
    doc_id: str
    version: int
    chunk_no: int

    @classmethod
    def of(cls, hit: Hit) -> ServedChunk:
        return cls(doc_id=hit.doc_id, version=hit.chunk.version, chunk_no=hit.chunk_no)


class AuditRecord(BaseModel):
    schema_: Literal["headwater.audit/1"] = Field("headwater.audit/1", alias="schema")
    request_id: str = Field(description="The server's own id of the request.")
    client_request_id: str | None = Field(
        None, description="The caller's x-request-id, kept for correlation (never for counting)."
    )
    at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat())
    tenant: str
    user_id: str
    department: str | None = None
    key_id: str | None = None
    endpoint: Literal["chat", "search"]
    chunks: list[ServedChunk]
    route_tier: str | None = None
    model: str | None = None
    route_reason: str | None = None
    route_score: float | None = Field(None, description="model=auto: the router's score.")
    route_threshold: float | None = Field(None, description="model=auto: the threshold then.")
    served_tier: str | None = Field(None, description="Differs from route_tier on fallback.")
    firewall: dict[str, int] = Field(
        default_factory=dict, description="PII findings by 'direction:ENTITY' (never the text)."
    )
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = Field(
        0.0, description="The tokens at the served model's price (HEADWATER_MODEL_PRICES)."
    )
    gpu_seconds: float = Field(
        0.0, description="Its share of the model server's busy time (inference.busy)."
    )
    cache: Literal["hit", "semantic_hit", "miss", "bypass"] | None = Field(
        None,
        description="The answer cache's outcome (null: not cached for this tenant); a hit "
        "used no model, so its tokens and cost are 0.",
    )
    latency_ms: float
    trace_id: str | None = None

    @classmethod
    def for_principal(cls, principal: Principal, **fields: object) -> AuditRecord:
        context = trace.get_current_span().get_span_context()
        return cls.model_validate(
            {
                "tenant": principal.tenant,
                "user_id": principal.user_id,
                "department": principal.department,
                "key_id": principal.key_id,
                "trace_id": f"{context.trace_id:032x}" if context.is_valid else None,
                **fields,
            }
        )


class AuditLog:
    """Writes audit records, in one of two modes (``HEADWATER_AUDIT_SYNC``):

    - acknowledged (``sync``): ``write`` returns once Kafka has acknowledged the record, so
      an answer never leaves before its record is durable. It costs the answer the broker's
      round trip (0.3-2 ms on the benchmark machine, BENCHMARKS.md).
    - queued (the default): ``write`` queues the record and returns. Records gathered over
      ``batch_s`` go to the producer together (its own, so one wake-up of its I/O thread
      sends a batch), which delivers them, retrying through broker outages for
      ``message.timeout.ms``; ``close`` sends what is left. Only a crash of the process
      between the answer and the acknowledgement (``batch_s`` plus the broker's round
      trip) loses records; a record Kafka refuses is logged and counted
      (``headwater_audit_failures_total``).
    """

    def __init__(
        self,
        producer: KafkaProducer,
        topic: str,
        *,
        acknowledged: bool,
        batch_s: float = 0.0,
    ):
        self._producer = producer
        self._topic = topic
        self.acknowledged = acknowledged
        self._batch_s = batch_s
        self._pending: list[AuditRecord] = []
        self._timer: asyncio.TimerHandle | None = None

    async def write(self, record: AuditRecord) -> None:
        """Write ``record``: acknowledged before this returns, or queued (see the class)."""
        if self.acknowledged:
            await self._producer.send_nowait(self._topic, key=_key(record), value=_value(record))
        else:
            self.queue(record)

    def queue(self, record: AuditRecord) -> None:
        """Queue ``record`` without waiting, whatever the mode (a stream whose client left
        cannot wait: its generator is being closed). Call from the event loop."""
        self._pending.append(record)
        if self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop (a generator finalised late): send it now
                self._send_pending()
                return
            self._timer = loop.call_later(self._batch_s, self._send_pending)

    def _send_pending(self) -> None:
        pending, self._pending, self._timer = self._pending, [], None
        for record in pending:
            self._producer.produce(
                self._topic, key=_key(record), value=_value(record), on_done=_count_failure
            )

    async def flush(self, timeout_s: float) -> bool:
        """Send the gathered records now and wait until every record handed to the
        producer is acknowledged; False if some were not within ``timeout_s``."""
        self.close()
        return await asyncio.to_thread(self._producer.flush, timeout_s) == 0

    def close(self) -> None:
        """Send the gathered records now (the producer's own close flushes them)."""
        if self._timer is not None:
            self._timer.cancel()
        self._send_pending()


def _key(record: AuditRecord) -> bytes:
    return f"{record.tenant}/{record.request_id}".encode()


def _value(record: AuditRecord) -> bytes:
    return record.model_dump_json(by_alias=True).encode()


def _count_failure(error: str | None, _delivered: Delivered | None) -> None:
    """Runs on the producer's poll thread for every record: counts and logs a refusal."""
    if error is not None:
        AUDIT_FAILURES.inc()
        _log.error("an audit record was not acknowledged by Kafka: %s", error)
