"""The stored point's typed record: the one place that writes and reads its payload.

Every chunk's payload carries the reserved keys of ARCHITECTURE.md ("Qdrant collection").
The ingest writer builds a :class:`StoredChunk` (and the payload updates of an ACL change
or a metadata refresh through :func:`acl_update` and :func:`document_update`); searches
hand back :class:`~retrieval.schema.Hit` objects carrying one. No other package spells a
payload key (tests/unit/test_import_rules.py holds it).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from acl.filter import document_access_keys
from acl.models import DocumentAcl

# The payload key the permission filter matches: the access keys of the chunk's ACL.
ACCESS_KEYS = "acl_keys"


def _now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass(frozen=True)
class DocumentFields:
    """What every chunk of one document version carries (its text aside)."""

    tenant: str
    doc_id: str
    version: int
    acl: DocumentAcl
    title: str | None = None
    uri: str | None = None
    source: str | None = None
    content_sha256: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    indexed_at: str = field(default_factory=_now)
    # W3C traceparent of the ingest span that indexed this version: an answer's retrieval
    # span links to it, so one answer leads back to the publishes that fed it.
    ingest_trace: str | None = None

    def to_payload(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "doc_id": self.doc_id,
            "version": self.version,
            "title": self.title,
            "uri": self.uri,
            "source": self.source,
            **acl_payload(self.tenant, self.acl),
            "indexed_at": self.indexed_at,
            "ingest_trace": self.ingest_trace,
            "content_sha256": self.content_sha256,
            # Free-form metadata lives under its own key: it never overwrites a reserved one.
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> DocumentFields:
        return cls(
            tenant=str(payload["tenant"]),
            doc_id=str(payload["doc_id"]),
            version=int(payload.get("version", 0)),
            acl=DocumentAcl(
                users=tuple(payload.get("acl_users") or ()),
                groups=tuple(payload.get("acl_groups") or ()),
                public=bool(payload.get("acl_public", False)),
            ),
            title=payload.get("title"),
            uri=payload.get("uri"),
            source=payload.get("source"),
            content_sha256=payload.get("content_sha256"),
            metadata=dict(payload.get("metadata") or {}),
            indexed_at=str(payload.get("indexed_at") or ""),
            ingest_trace=payload.get("ingest_trace"),
        )


@dataclass(frozen=True)
class StoredChunk:
    """One stored chunk: its document's fields, its number and its text."""

    document: DocumentFields
    chunk_no: int
    text: str

    @property
    def tenant(self) -> str:
        return self.document.tenant

    @property
    def doc_id(self) -> str:
        return self.document.doc_id

    @property
    def version(self) -> int:
        return self.document.version

    @property
    def title(self) -> str | None:
        return self.document.title

    @property
    def uri(self) -> str | None:
        return self.document.uri

    @property
    def source(self) -> str | None:
        return self.document.source

    @property
    def acl(self) -> DocumentAcl:
        return self.document.acl

    def ingest_span(self) -> tuple[int, int] | None:
        """The (trace id, span id) of the ingest span that indexed this chunk, if known."""
        parts = (self.document.ingest_trace or "").split("-")
        if len(parts) != 4 or len(parts[1]) != 32 or len(parts[2]) != 16:
            return None
        try:
            return int(parts[1], 16), int(parts[2], 16)
        except ValueError:
            return None

    def with_document(self, **changes: Any) -> StoredChunk:
        """A copy whose document fields are changed (tests and tools)."""
        return replace(self, document=replace(self.document, **changes))

    def to_payload(self) -> dict[str, Any]:
        return {**self.document.to_payload(), "chunk_no": self.chunk_no, "text": self.text}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> StoredChunk:
        return cls(
            document=DocumentFields.from_payload(payload),
            chunk_no=int(payload.get("chunk_no", 0)),
            text=str(payload.get("text") or ""),
        )


def acl_payload(tenant: str, acl: DocumentAcl) -> dict[str, Any]:
    """The ACL as its reserved payload keys: the three readable ones, and ``acl_keys``,
    the access keys the permission filter matches (:mod:`acl.filter`)."""
    return {
        "acl_users": list(acl.users),
        "acl_groups": list(acl.groups),
        "acl_public": acl.public,
        ACCESS_KEYS: document_access_keys(tenant, acl),
    }


def acl_update(tenant: str, acl: DocumentAcl, version: int) -> dict[str, Any]:
    """The payload update of an ACL change: the chunks take the document's new version
    with its new ACL (no re-embedding)."""
    return {**acl_payload(tenant, acl), "version": version}


def access_keys_update(payload: dict[str, Any]) -> dict[str, Any]:
    """The ``acl_keys`` of a point stored before they existed, from its own tenant and ACL."""
    return {ACCESS_KEYS: document_access_keys(*_tenant_acl(payload))}


def _tenant_acl(payload: dict[str, Any]) -> tuple[str, DocumentAcl]:
    document = DocumentFields.from_payload(payload)
    return document.tenant, document.acl


def document_update(document: DocumentFields) -> dict[str, Any]:
    """The payload update of a new version whose text is unchanged (nothing re-embedded)."""
    return document.to_payload()
