"""Wire types of the operator's JSON API."""

from __future__ import annotations

from pydantic import BaseModel, Field

from api.audit import AuditRecord
from ingest.dead_letters import DeadLetter


class Me(BaseModel):
    """The authenticated caller, as the server resolved it."""

    tenant: str
    user_id: str
    groups: list[str]
    department: str | None
    roles: list[str]
    key_id: str | None


class DeadLetterInfo(BaseModel):
    partition: int
    offset: int
    key: str = Field(description="The document key the letter is filed under.")
    source_key: str = Field(description="The key it had on the documents topic.")
    doc_id: str | None
    error_type: str
    reason: str = Field(description="Why it was rejected (the x-error header, truncated).")
    failed_at: str
    tombstone: bool

    @classmethod
    def of(cls, letter: DeadLetter) -> DeadLetterInfo:
        return cls(
            partition=letter.partition,
            offset=letter.offset,
            key=letter.key,
            source_key=letter.source_key,
            doc_id=letter.doc_id,
            error_type=letter.error_type,
            reason=letter.reason,
            failed_at=letter.failed_at,
            tombstone=letter.tombstone,
        )


class DeadLetterList(BaseModel):
    object: str = "list"
    data: list[DeadLetterInfo]
    truncated: bool = Field(False, description="More letters exist than were returned.")


class Replayed(BaseModel):
    partition: int = Field(description="The dead letter's partition on the DLQ.")
    offset: int
    key: str
    documents_partition: int = Field(description="Where it went on the documents topic.")


class AuditList(BaseModel):
    object: str = "list"
    data: list[AuditRecord]
    truncated: bool = Field(False, description="Older matches were left out.")


class Sample(BaseModel):
    """One series of a Prometheus metric of this process."""

    labels: dict[str, str]
    value: float


class OperationsSnapshot(BaseModel):
    """This process's own metrics, as the console's operations page reads them."""

    process_ingest: bool = Field(description="Whether this process runs the ingest worker.")
    ingest_lag: list[Sample] = Field(description="Messages not yet processed, per partition.")
    freshness_s_mean: float | None = Field(description="Publish-to-searchable, mean so far.")
    freshness_count: int
    ingest_events: list[Sample]
    dlq_sent: list[Sample]
    route_decisions: list[Sample]
    route_target_large_share: float
    firewall_actions: list[Sample]
    http_requests: list[Sample] = Field(description="Requests by route and status.")
    llm_backends_healthy: list[Sample]
    follower_staleness_s: list[Sample]
