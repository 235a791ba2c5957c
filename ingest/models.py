"""What the documents topic holds, and the erasure record (see ARCHITECTURE.md).

The topic is compacted by record key, so it keeps the last record of every key: a
replay of it must rebuild the index exactly. Hence two keys per document, in the same
partition (:func:`core.kafka.key_partition` of the document key):

- ``{tenant}/{doc_id}``: the document's content, ``upsert`` or ``delete`` events, and
  the tombstone (null value) that follows a delete or an erasure;
- ``acl {tenant}/{doc_id}``: its ``acl`` events (no text). Were they keyed like the
  content, the last ACL change would compact the text away. No document key can be
  an ACL key: a tenant holds no whitespace.

Compaction keeps the two keys' last records in their original order, and versions
decide between them exactly as they did when first applied.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from acl.models import DocumentAcl

SCHEMA = "headwater.document/1"
ERASURE_SCHEMA = "headwater.erasure/1"
ACL_KEY_PREFIX = "acl "
# A tombstone ingest workers append to every partition of the documents and dead-letter
# topics, so that a partition's active segment closes and can be compacted even when
# nothing else is written to it. It holds no "/": no document key can equal it.
SEAL_KEY = b"headwater:seal"
# Headers of an erasure's tombstones: on the document's own partition (the worker
# deletes the chunks and purges the store's files), and on every other one (a sweep,
# for records a producer with another partitioner put there: log hygiene only).
ERASURE_HEADER = "x-headwater-erasure"
SWEEP_HEADER = "x-headwater-erasure-sweep"
_TENANT = re.compile(r"[^/\s]{1,128}")


def document_key(tenant: str, doc_id: str) -> str:
    """The key of a document's content records (and of its dead letters)."""
    return f"{tenant}/{doc_id}"


def acl_key(tenant: str, doc_id: str) -> str:
    """The key of a document's ACL-change records."""
    return f"{ACL_KEY_PREFIX}{tenant}/{doc_id}"


@dataclass(frozen=True)
class RecordKey:
    """The document a record key names, and which of its two keys it is."""

    kind: Literal["document", "acl"]
    tenant: str
    doc_id: str

    @property
    def document_key(self) -> str:
        return document_key(self.tenant, self.doc_id)


def parse_record_key(key: bytes | None) -> RecordKey | None:
    """The document ``key`` names, or None for a key that names none (the seal, junk)."""
    try:
        text = (key or b"").decode("utf-8")
    except UnicodeDecodeError:
        return None
    kind: Literal["document", "acl"] = "document"
    if text.startswith(ACL_KEY_PREFIX):
        kind, text = "acl", text[len(ACL_KEY_PREFIX) :]
    tenant, slash, doc_id = text.partition("/")
    if not slash or not _TENANT.fullmatch(tenant) or not 1 <= len(doc_id) <= 512:
        return None
    return RecordKey(kind, tenant, doc_id)


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
        """The document's key, ``{tenant}/{doc_id}``: its partition is this key's."""
        return document_key(self.tenant, self.doc_id)

    @property
    def record_key(self) -> str:
        """The Kafka key the event is published under: the ACL key for ``acl`` events,
        the document key for the others (see the module docstring)."""
        return acl_key(self.tenant, self.doc_id) if self.op == "acl" else self.key

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()


@dataclass(frozen=True)
class Tombstone:
    """A null value under a document key: from here on the document has no state.

    The worker deletes every chunk of the document whatever its version, as compaction
    will drop every earlier record of the key: the index stays what a replay of the
    compacted log rebuilds. ``erasure_id`` marks an erasure's own tombstone, after which
    the store's files are purged of the deleted chunks too.
    """

    op: ClassVar[Literal["tombstone"]] = "tombstone"
    tenant: str
    doc_id: str
    erasure_id: str | None = None

    @property
    def key(self) -> str:
        return document_key(self.tenant, self.doc_id)


class ErasureRecord(BaseModel):
    """An erasure, as recorded on the audit topic (keyed ``{tenant}/{erasure_id}``):
    who asked, when, which document, and where its tombstone landed. Never any text."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_: Literal["headwater.erasure/1"] = Field("headwater.erasure/1", alias="schema")
    erasure_id: str
    at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat())
    tenant: str
    doc_id: str
    requested_by: str = Field(description="The user id of the caller, or the operator.")
    key_id: str | None = Field(None, description="The caller's credential id (HTTP).")
    via: Literal["cli", "api"]
    reference: str | None = Field(
        None, max_length=200, description="A ticket or request id; never document content."
    )
    documents_partition: int
    documents_offset: int = Field(description="Offset of the tombstone on the documents topic.")

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()
