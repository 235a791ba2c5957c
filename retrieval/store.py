"""The vector-store interface. Two adapters implement it: ``qdrant_edge`` and ``qdrant``.

Methods are synchronous (both engines answer in milliseconds); async callers run them
in a worker thread. Search takes a :class:`PermissionFilter` and nothing else, so no
caller can reach the store's search without the caller's tenant and ACL clauses; a
hybrid search puts it on each of its prefetches and on the fusion alike.

Migration to the lexical vector: a collection created before it (dense only) cannot gain
a named vector in place, on either engine. Such a collection is opened as it is and
keeps serving: its ``lexical`` property is false (a warning is logged when it is opened),
upserts write the dense vector alone, and a sparse or hybrid search runs as a dense
one. Nothing is lost or hidden. Re-indexing is the embedding-model procedure of docs/operating.md
("Upgrades"): a worker with a second alias and consumer group replays the documents
topic into a new collection, which is created with the lexical vector, and the alias
is switched to it; its ``__documents`` companion follows the new collection.

Migration to access keys: the permission filter matches the ``acl_keys`` payload field
(:mod:`acl.filter`). Points stored before it existed match nothing, so they fail closed;
each adapter gives them their keys from their own tenant and ACL when it opens the
collection (:func:`backfill_access_keys`, logged with the count), with no re-embedding.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from acl.filter import PermissionFilter
from core.settings import Settings
from retrieval.query import SearchQuery
from retrieval.records import ACCESS_KEYS, StoredChunk, access_keys_update
from retrieval.schema import ChunkPoint, DocumentKey, DocumentState, Hit

_log = logging.getLogger(__name__)

LEGACY_COLLECTION_WARNING = (
    "collection %s has no lexical vector: sparse and hybrid searches run dense until it is "
    "re-indexed (docs/operating.md, Upgrades)"
)

ACCESS_KEYS_BACKFILLED = (
    "gave %d stored chunks their access keys (acl_keys): they were stored before the "
    "permission filter matched that field and were readable by nobody until now"
)

PointRecords = tuple[Sequence[tuple[Any, dict[str, Any]]], Any]


def backfill_access_keys(
    scroll_missing: Callable[[Any], PointRecords],
    set_payload: Callable[[Any, dict[str, Any]], None],
) -> int:
    """Give every point without ``acl_keys`` its keys, from its own tenant and ACL; the
    number of points updated. ``scroll_missing(offset)`` pages through those points as
    (id, payload) pairs and the next offset (None at the end). Until updated such a point
    matches no permission filter: it fails closed."""
    offset: Any = None
    updated = 0
    while True:
        records, offset = scroll_missing(offset)
        for point, payload in records:
            update = access_keys_update(payload)
            if update[ACCESS_KEYS]:  # an empty ACL grants nothing: no keys to add
                set_payload(point, update)
                updated += 1
        if offset is None:
            break
    if updated:
        _log.warning(ACCESS_KEYS_BACKFILLED, updated)
    return updated


class VectorStore(Protocol):
    """Permission-tagged chunk storage with ACL-filtered dense, sparse and hybrid search."""

    @property
    def lexical(self) -> bool:
        """Whether the collection has the lexical vector (false: built before it)."""

    @property
    def collection(self) -> str:
        """The physical collection behind the alias (after :meth:`ensure_collection`)."""

    def ensure_collection(self, *, dim: int, model: str, name: str | None = None) -> None:
        """Create the collection behind the alias, with its payload indexes, if missing
        (named ``name``, or after the model: ``versioned_collection``)."""

    def binding(self) -> dict[str, Any] | None:
        """What built the collection (``retrieval.binding``), if recorded."""

    def record_binding(self, record: dict[str, Any]) -> None:
        """Record what builds the collection (in its ``__documents`` companion)."""

    def promote(self, alias: str) -> str | None:
        """Point ``alias`` at this store's collection and drop this store's own alias, in
        one atomic step; the collection ``alias`` named before (None if it named none)."""

    def drop_collection(self, name: str) -> None:
        """Delete collection ``name`` and its companion; refused while an alias names it."""

    def upsert(self, points: Sequence[ChunkPoint]) -> None:
        """Insert or overwrite points (ids are deterministic, so re-delivery is harmless)."""

    def delete_document(self, tenant: str, doc_id: str, *, from_chunk: int = 0) -> None:
        """Delete a document's chunks numbered ``from_chunk`` and up (all by default)."""

    def set_payload(self, tenant: str, doc_id: str, payload: dict[str, Any]) -> None:
        """Overwrite the given payload keys on every chunk of a document."""

    def search(
        self,
        query: SearchQuery | Sequence[float],
        *,
        permission: PermissionFilter,
        limit: int,
    ) -> list[Hit]:
        """The ``limit`` best chunks for ``query`` that ``permission`` lets its principal
        see, best first; a bare vector is a dense search."""

    def document_states(self, keys: Sequence[DocumentKey]) -> dict[DocumentKey, DocumentState]:
        """The recorded state of each known document among ``keys``."""

    def put_document_states(self, states: Mapping[DocumentKey, DocumentState]) -> None:
        """Record documents' applied versions (written after their chunks)."""

    def count(self, *, tenant: str | None = None, doc_id: str | None = None) -> int:
        """Exact number of stored points, optionally for one tenant or one document."""

    def chunks(self, *, tenant: str) -> Iterator[StoredChunk]:
        """Every stored chunk of a tenant (audits and consistency checks, not serving)."""

    def purge_deleted(self) -> None:
        """Rewrite storage so that deleted points' data is gone from its files (erasure):
        the embedded engine vacuums now; a server does so on its own (docs/operating.md,
        "Erasure")."""

    def close(self) -> None:
        """Flush and release the store."""


def open_store(settings: Settings) -> VectorStore:
    """The server adapter when ``HEADWATER_QDRANT_URL`` is set, else the embedded engine."""
    store: VectorStore
    if settings.qdrant_url:
        from retrieval.qdrant import QdrantServerStore

        store = QdrantServerStore.connect(
            settings.qdrant_url,
            api_key=settings.qdrant_api_key,
            alias=settings.collection,
            shards=settings.qdrant_shards,
            replicas=settings.qdrant_replicas,
            timeout_s=settings.qdrant_timeout_s,
        )
    else:
        from retrieval.qdrant_edge import EdgeStore

        store = EdgeStore(settings.store_path, alias=settings.collection)
    if settings.fault_store_flag is not None:
        from retrieval.faults import OutageSwitchStore

        store = OutageSwitchStore(store, settings.fault_store_flag)
    return store
