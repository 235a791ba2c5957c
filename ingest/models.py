"""The document event, schema ``headwater.document/1`` (see ARCHITECTURE.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from acl.models import DocumentAcl

SCHEMA = "headwater.document/1"


class DocumentEvent(BaseModel):
    """One change of one document, as connectors publish it to Kafka."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_: Literal["headwater.document/1"] = Field("headwater.document/1", alias="schema")
    op: Literal["upsert", "delete", "acl"]
    tenant: str = Field(min_length=1, max_length=128, pattern=r"^[^/\s]+$")
    doc_id: str = Field(min_length=1, max_length=512)
    version: int = Field(ge=0)
    acl: DocumentAcl = Field(default_factory=DocumentAcl)
    title: str | None = None
    text: str | None = None
    content_type: str = "text/plain"
    uri: str | None = None
    source: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    updated_at: datetime | None = None

    @model_validator(mode="after")
    def _text_for_upsert(self) -> DocumentEvent:
        if self.op == "upsert" and not (self.text and self.text.strip()):
            raise ValueError("an upsert event needs a non-empty 'text'")
        return self

    @property
    def key(self) -> str:
        """The Kafka key: all events of one document share a partition."""
        return f"{self.tenant}/{self.doc_id}"

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()
