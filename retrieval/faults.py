"""Fault injection for chaos tests: a store that fails like an outage on demand.

Enabled only by ``HEADWATER_FAULT_STORE_FLAG=<path>``: while that file exists, every
store call raises ``UpstreamUnavailable``, as a Qdrant server that went away would.
``python -m bench.chaos`` uses it to prove an outage loses nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from acl.filter import PermissionFilter
from core.errors import UpstreamUnavailable
from retrieval.query import SearchQuery
from retrieval.records import StoredChunk
from retrieval.schema import ChunkPoint, DocumentKey, DocumentState, Hit
from retrieval.store import VectorStore


class OutageSwitchStore:
    """Wraps a store; fails every call while ``flag`` exists."""

    def __init__(self, inner: VectorStore, flag: Path):
        self._inner = inner
        self._flag = flag

    def _check(self) -> None:
        if self._flag.exists():
            raise UpstreamUnavailable(f"injected store outage ({self._flag} exists)")

    @property
    def lexical(self) -> bool:
        return self._inner.lexical

    @property
    def collection(self) -> str:
        return self._inner.collection

    def ensure_collection(self, *, dim: int, model: str, name: str | None = None) -> None:
        self._inner.ensure_collection(dim=dim, model=model, name=name)

    def binding(self) -> dict[str, Any] | None:
        return self._inner.binding()

    def record_binding(self, record: dict[str, Any]) -> None:
        self._inner.record_binding(record)

    def promote(self, alias: str) -> str | None:
        return self._inner.promote(alias)

    def drop_collection(self, name: str) -> None:
        self._inner.drop_collection(name)

    def upsert(self, points: Sequence[ChunkPoint]) -> None:
        self._check()
        self._inner.upsert(points)

    def delete_document(self, tenant: str, doc_id: str, *, from_chunk: int = 0) -> None:
        self._check()
        self._inner.delete_document(tenant, doc_id, from_chunk=from_chunk)

    def set_payload(self, tenant: str, doc_id: str, payload: dict[str, Any]) -> None:
        self._check()
        self._inner.set_payload(tenant, doc_id, payload)

    def search(
        self,
        query: SearchQuery | Sequence[float],
        *,
        permission: PermissionFilter,
        limit: int,
    ) -> list[Hit]:
        self._check()
        return self._inner.search(query, permission=permission, limit=limit)

    def document_states(self, keys: Sequence[DocumentKey]) -> dict[DocumentKey, DocumentState]:
        self._check()
        return self._inner.document_states(keys)

    def put_document_states(self, states: Mapping[DocumentKey, DocumentState]) -> None:
        self._check()
        self._inner.put_document_states(states)

    def count(self, *, tenant: str | None = None, doc_id: str | None = None) -> int:
        self._check()
        return self._inner.count(tenant=tenant, doc_id=doc_id)

    def chunks(self, *, tenant: str) -> Iterator[StoredChunk]:
        self._check()
        return self._inner.chunks(tenant=tenant)

    def purge_deleted(self) -> None:
        self._check()
        self._inner.purge_deleted()

    def close(self) -> None:
        self._inner.close()
