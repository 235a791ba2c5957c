"""The collection schema. This module is its only owner (ARCHITECTURE.md, "Qdrant collection").

Each chunk is stored with two named vectors: ``dense`` (the embedding model's, cosine) and
``lexical`` (sparse BM25 term weights from :mod:`retrieval.sparse`, with Qdrant's IDF
modifier, so the engine applies IDF at query time). A collection created before the
lexical vector existed keeps serving dense-only: see :mod:`retrieval.store`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from retrieval.records import StoredChunk

VECTOR_NAME = "dense"
SPARSE_VECTOR_NAME = "lexical"
# A fixed namespace so every process derives the same point id for the same chunk.
POINT_NAMESPACE = uuid.UUID("5b0c3f5e-3c4a-4d0e-9a55-6f1d3b7c2a10")

RESERVED_KEYS = frozenset(
    {
        "tenant",
        "doc_id",
        "version",
        "chunk_no",
        "text",
        "title",
        "uri",
        "source",
        "acl_users",
        "acl_groups",
        "acl_public",
        "acl_keys",
        "indexed_at",
        "ingest_trace",
        "content_sha256",
        "metadata",
    }
)

IndexKind = Literal["keyword", "tenant_keyword", "bool", "integer"]

PAYLOAD_INDEXES: dict[str, IndexKind] = {
    "tenant": "tenant_keyword",
    "doc_id": "keyword",
    # The permission filter matches this one field (acl.filter); the readable ACL keys
    # acl_users, acl_groups and acl_public are stored, not filtered on.
    "acl_keys": "keyword",
    "version": "integer",
    "chunk_no": "integer",
}


def point_id(tenant: str, doc_id: str, chunk_no: int) -> str:
    """UUIDv5 of ``{tenant}/{doc_id}/{chunk_no}``: a re-delivery overwrites, never duplicates."""
    return str(uuid.uuid5(POINT_NAMESPACE, f"{tenant}/{doc_id}/{chunk_no}"))


def state_point_id(tenant: str, doc_id: str) -> str:
    """Id of a document's state record (its applied version) in the state collection."""
    return str(uuid.uuid5(POINT_NAMESPACE, f"{tenant}/{doc_id}"))


# The companion's record of what built the collection (retrieval.binding).
BINDING_POINT_ID = str(uuid.uuid5(POINT_NAMESPACE, "collection-binding"))


def state_collection(collection: str) -> str:
    """The companion collection of applied document versions (tombstones included).

    It follows the physical collection, so a rebuild for a new embedding model starts
    with no recorded versions and replays every event.
    """
    return f"{collection}__documents"


def versioned_collection(alias: str, model: str, dim: int) -> str:
    """The physical collection behind the alias, named after its embedding model."""
    slug = "".join(ch if ch.isalnum() else "_" for ch in model.lower()).strip("_")
    return f"{alias}__{slug}_{dim}"


@dataclass(frozen=True)
class SparseTerms:
    """A sparse vector as plain data: term ids (hashes) and their weights."""

    indices: tuple[int, ...]
    values: tuple[float, ...]


@dataclass(frozen=True)
class ChunkPoint:
    """One chunk ready to store: id, dense vector, lexical terms and its typed record."""

    id: str
    vector: list[float]
    chunk: StoredChunk
    lexical: SparseTerms

    def payload(self) -> dict[str, Any]:
        return self.chunk.to_payload()


DocumentKey = tuple[str, str]
"""``(tenant, doc_id)``."""


@dataclass(frozen=True)
class DocumentState:
    """What the index last applied for a document; a delete leaves a tombstone."""

    version: int
    deleted: bool = False
    content_sha256: str | None = None

    def to_payload(self, key: DocumentKey) -> dict[str, Any]:
        return {
            "tenant": key[0],
            "doc_id": key[1],
            "version": self.version,
            "deleted": self.deleted,
            "content_sha256": self.content_sha256,
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> DocumentState:
        return cls(
            version=int(payload["version"]),
            deleted=bool(payload.get("deleted", False)),
            content_sha256=payload.get("content_sha256"),
        )


def states_by_key(payloads: Iterable[dict[str, Any] | None]) -> dict[DocumentKey, DocumentState]:
    """Document states keyed ``(tenant, doc_id)``, from stored state-record payloads."""
    states: dict[DocumentKey, DocumentState] = {}
    for payload in payloads:
        if payload:
            states[(str(payload["tenant"]), str(payload["doc_id"]))] = DocumentState.from_payload(
                payload
            )
    return states


@dataclass(frozen=True)
class Hit:
    """One search result: the point's id, its score and the stored chunk.

    ``score`` is always the cosine similarity of the question and the chunk, whatever the
    search mode (the grounding floor and the router read it as such); hits come in the
    engine's order, whose own score (fused RRF/DBSF, BM25, or MMR) is ``rank_score``.
    """

    id: str
    score: float
    chunk: StoredChunk
    rank_score: float | None = None

    @classmethod
    def of(
        cls,
        point_id: object,
        score: float,
        payload: dict[str, Any] | None,
        *,
        rank_score: float | None = None,
    ) -> Hit:
        """A hit from an engine's scored point (its id, score and payload)."""
        return cls(
            id=str(point_id),
            score=float(score),
            chunk=StoredChunk.from_payload(payload or {}),
            rank_score=float(score) if rank_score is None else rank_score,
        )

    @property
    def doc_id(self) -> str:
        return self.chunk.doc_id

    @property
    def chunk_no(self) -> int:
        return self.chunk.chunk_no
