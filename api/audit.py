"""The audit trail: one record per answered request on ``headwater.audit.v1``.

Who asked, which chunks (doc_id, version, chunk_no) were served, route, model, tokens,
latency and trace id; never the prompt or document text. Keyed ``{tenant}/{request_id}``.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Literal

from opentelemetry import trace
from pydantic import BaseModel, Field

from acl.models import Principal
from ingest.kafka import Delivered, KafkaProducer
from retrieval.schema import Hit


class ServedChunk(BaseModel):
    doc_id: str
    version: int
    chunk_no: int

    @classmethod
    def of(cls, hit: Hit) -> ServedChunk:
        return cls(
            doc_id=hit.doc_id, version=int(hit.payload.get("version", 0)), chunk_no=hit.chunk_no
        )


class AuditRecord(BaseModel):
    schema_: Literal["headwater.audit/1"] = Field("headwater.audit/1", alias="schema")
    request_id: str
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
    """Writes audit records; a write is acknowledged by Kafka before it returns."""

    def __init__(self, producer: KafkaProducer, topic: str):
        self._producer = producer
        self._topic = topic

    async def write(self, record: AuditRecord) -> None:
        await self.submit(record)

    def submit(self, record: AuditRecord) -> asyncio.Future[Delivered]:
        """Queue the record now; the future resolves once Kafka acknowledged it."""
        return self._producer.send_nowait(
            self._topic,
            key=f"{record.tenant}/{record.request_id}".encode(),
            value=record.model_dump_json(by_alias=True).encode(),
        )
