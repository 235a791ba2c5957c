"""The vector-store interface. Two adapters implement it: ``qdrant_edge`` and ``qdrant``.

Methods are synchronous (both engines answer in milliseconds); async callers run them
in a worker thread. Search takes a :class:`PermissionFilter` and nothing else, so no
caller can reach the store's search without the caller's tenant and ACL clauses.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

from acl.filter import PermissionFilter
from core.settings import Settings
from retrieval.records import StoredChunk
from retrieval.schema import ChunkPoint, DocumentKey, DocumentState, Hit


class VectorStore(Protocol):
    """Permission-tagged chunk storage with ACL-filtered nearest-neighbour search."""

    def ensure_collection(self, *, dim: int, model: str) -> None:
        """Create the collection behind the alias, with its payload indexes, if missing."""

    def upsert(self, points: Sequence[ChunkPoint]) -> None:
        """Insert or overwrite points (ids are deterministic, so re-delivery is harmless)."""

    def delete_document(self, tenant: str, doc_id: str, *, from_chunk: int = 0) -> None:
        """Delete a document's chunks numbered ``from_chunk`` and up (all by default)."""

    def set_payload(self, tenant: str, doc_id: str, payload: dict[str, Any]) -> None:
        """Overwrite the given payload keys on every chunk of a document."""

    def search(
        self, vector: Sequence[float], *, permission: PermissionFilter, limit: int
    ) -> list[Hit]:
        """The ``limit`` nearest chunks that ``permission`` lets its principal see."""

    def document_states(self, keys: Sequence[DocumentKey]) -> dict[DocumentKey, DocumentState]:
        """The recorded state of each known document among ``keys``."""

    def put_document_states(self, states: Mapping[DocumentKey, DocumentState]) -> None:
        """Record documents' applied versions (written after their chunks)."""

    def count(self, *, tenant: str | None = None, doc_id: str | None = None) -> int:
        """Exact number of stored points, optionally for one tenant or one document."""

    def chunks(self, *, tenant: str) -> Iterator[StoredChunk]:
        """Every stored chunk of a tenant (audits and consistency checks, not serving)."""

    def close(self) -> None:
        """Flush and release the store."""


def open_store(settings: Settings) -> VectorStore:
    """The server adapter when ``HEADWATER_QDRANT_URL`` is set, else the embedded engine."""
    store: VectorStore
    if settings.qdrant_url:
        from retrieval.qdrant import QdrantServerStore

        store = QdrantServerStore.connect(
            settings.qdrant_url, api_key=settings.qdrant_api_key, alias=settings.collection
        )
    else:
        from retrieval.qdrant_edge import EdgeStore

        store = EdgeStore(settings.store_path, alias=settings.collection)
    if settings.fault_store_flag is not None:
        from retrieval.faults import OutageSwitchStore

        store = OutageSwitchStore(store, settings.fault_store_flag)
    return store
