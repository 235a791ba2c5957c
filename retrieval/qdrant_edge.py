"""Embedded adapter: Qdrant's own engine in-process (``qdrant-edge-py``).

An edge shard is one collection in one folder. The alias lives in ``aliases.json``
beside the shards, so an embedding-model change can build a new shard and switch
by rewriting one small file atomically.

Chunk shards are created without a write-ahead log, so that an erasure can leave no
text behind (``purge_deleted``): their updates are flushed before the document states
that record them are written, once per ingest batch.

A shard created before the ``lexical`` sparse vector cannot gain it (the engine refuses
a config that adds a vector to existing segments): it is served dense-only until rebuilt
(:mod:`retrieval.store`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from acl.filter import PermissionFilter
from retrieval.qdrant_edge_query import (
    index_schema,
    match,
    permission_filter,
    query_request,
    sparse_vector,
)
from retrieval.query import SearchQuery, as_search_query, hits_of
from retrieval.records import ACCESS_KEYS, StoredChunk
from retrieval.schema import (
    BINDING_POINT_ID,
    PAYLOAD_INDEXES,
    SPARSE_VECTOR_NAME,
    VECTOR_NAME,
    ChunkPoint,
    DocumentKey,
    DocumentState,
    Hit,
    state_collection,
    state_point_id,
    states_by_key,
    versioned_collection,
)
from retrieval.store import LEGACY_COLLECTION_WARNING, PointRecords, backfill_access_keys

_log = logging.getLogger(__name__)


class EdgeStore:
    """The vector store on an embedded Qdrant edge shard (one process owns the folder)."""

    def __init__(self, root: Path, *, alias: str):
        self._root = root
        self._alias = alias
        self._shard: qe.EdgeShard | None = None
        self._states: qe.EdgeShard | None = None
        self._write_lock = threading.Lock()
        self._lexical = True
        self._name: str | None = None
        target = self._read_aliases().get(alias)
        if target and (root / target).exists():
            self._name = target
            shard, self._lexical = _load_chunk_shard(root / target)
            self._shard = _prepared(shard)
            self._states = _open_shard(root / state_collection(target), _STATE_VECTORS)

    @property
    def lexical(self) -> bool:
        """Whether the collection has the ``lexical`` sparse vector (sparse/hybrid search)."""
        return self._lexical

    @property
    def collection(self) -> str:
        if self._name is None:
            raise RuntimeError("collection not created yet: call ensure_collection() first")
        return self._name

    def ensure_collection(self, *, dim: int, model: str, name: str | None = None) -> None:
        if self._shard is not None:
            return
        name = name or versioned_collection(self._alias, model, dim)
        path = self._root / name
        if path.exists():
            shard, self._lexical = _load_chunk_shard(path)
        else:
            dense = {VECTOR_NAME: qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine)}
            config = qe.EdgeConfig(
                vectors=dense,
                sparse_vectors=_SPARSE_VECTORS,
                optimizers=_VACUUM_ON_PURGE,
                wal_enabled=False,
            )
            shard = qe.EdgeShard.create(str(path), config)
        self._states = _open_shard(self._root / state_collection(name), _STATE_VECTORS)
        self._write_aliases({**self._read_aliases(), self._alias: name})
        self._shard, self._name = _prepared(shard), name

    def binding(self) -> dict[str, Any] | None:
        records = self._ready_states().retrieve(
            [BINDING_POINT_ID], with_payload=True, with_vector=False
        )
        return dict(records[0].payload or {}) if records else None

    def record_binding(self, record: dict[str, Any]) -> None:
        point = qe.Point(BINDING_POINT_ID, {_STATE_VECTOR: [1.0]}, record)
        with self._write_lock:
            self._ready_states().update(qe.UpdateOperation.upsert_points([point]))

    def promote(self, alias: str) -> str | None:
        aliases = self._read_aliases()
        previous = aliases.get(alias)
        aliases[alias] = self.collection
        aliases.pop(self._alias, None)
        self._write_aliases(aliases)  # one atomic file replace
        self._alias = alias
        return previous

    def drop_collection(self, name: str) -> None:
        holders = [a for a, target in self._read_aliases().items() if target == name]
        if holders or name == self._name:
            raise ValueError(f"collection {name!r} is in use (aliases: {holders or 'this store'})")
        for folder in (self._root / name, self._root / state_collection(name)):
            shutil.rmtree(folder, ignore_errors=True)

    def upsert(self, points: Sequence[ChunkPoint]) -> None:
        if not points:
            return
        operation = qe.UpdateOperation.upsert_points(
            [qe.Point(p.id, self._vectors(p), p.payload()) for p in points]
        )
        with self._write_lock:
            self._ready().update(operation)

    def delete_document(self, tenant: str, doc_id: str, *, from_chunk: int = 0) -> None:
        must: list[Any] = [match("tenant", tenant), match("doc_id", doc_id)]
        if from_chunk > 0:
            must.append(qe.FieldCondition("chunk_no", range=qe.RangeFloat(gte=from_chunk)))
        with self._write_lock:
            self._ready().update(qe.UpdateOperation.delete_points_by_filter(qe.Filter(must=must)))

    def set_payload(self, tenant: str, doc_id: str, payload: dict[str, Any]) -> None:
        document = qe.Filter(must=[match("tenant", tenant), match("doc_id", doc_id)])
        with self._write_lock:
            self._ready().update(qe.UpdateOperation.set_payload_by_filter(document, payload))

    def _vectors(self, point: ChunkPoint) -> dict[str, Any]:
        if not self._lexical:
            return {VECTOR_NAME: point.vector}
        return {VECTOR_NAME: point.vector, SPARSE_VECTOR_NAME: sparse_vector(point.lexical)}

    def search(
        self,
        query: SearchQuery | Sequence[float],
        *,
        permission: PermissionFilter,
        limit: int,
    ) -> list[Hit]:
        wanted = as_search_query(query)
        if not self._lexical:  # warned at open: served dense until re-indexed
            wanted = wanted.dense_only()
        request = query_request(wanted, permission_filter(permission), limit)
        return hits_of(wanted, self._ready().query(request))

    def document_states(self, keys: Sequence[DocumentKey]) -> dict[DocumentKey, DocumentState]:
        ids: list[qe.PointId] = [state_point_id(*key) for key in keys]
        records = (
            self._ready_states().retrieve(ids, with_payload=True, with_vector=False) if ids else []
        )
        return states_by_key(record.payload for record in records)

    def put_document_states(self, states: Mapping[DocumentKey, DocumentState]) -> None:
        # The chunks are durable before the states that say they are applied: a chunk
        # shard without a write-ahead log holds its updates in memory until a flush.
        if not self._has_wal():
            with self._write_lock:
                self._ready().flush()
        if not states:
            return
        points = [
            qe.Point(state_point_id(*key), {_STATE_VECTOR: [1.0]}, state.to_payload(key))
            for key, state in states.items()
        ]
        with self._write_lock:
            self._ready_states().update(qe.UpdateOperation.upsert_points(points))

    def count(self, *, tenant: str | None = None, doc_id: str | None = None) -> int:
        must: list[Any] = [
            match(key, value)
            for key, value in (("tenant", tenant), ("doc_id", doc_id))
            if value is not None
        ]
        return self._ready().count(qe.CountRequest(filter=qe.Filter(must=must), exact=True))

    def chunks(self, *, tenant: str) -> Iterator[StoredChunk]:
        offset: qe.PointId | None = None
        while True:
            records, offset = self._ready().scroll(
                qe.ScrollRequest(
                    offset=offset,
                    limit=256,
                    filter=qe.Filter(must=[match("tenant", tenant)]),
                    with_payload=True,
                    with_vector=False,
                )
            )
            for record in records:
                yield StoredChunk.from_payload(dict(record.payload or {}))
            if offset is None:
                return

    def purge_deleted(self) -> None:
        """Vacuum every segment that holds deleted points (the shard's optimizer config
        makes any deletion enough) and flush: their data leaves the segment files. A
        shard created with a write-ahead log (before erasure existed) keeps erased
        updates in it until 32 MiB of later writes rotate it: a warning says so."""
        with self._write_lock:
            shard = self._ready()
            shard.optimize()
            shard.flush()
        if self._has_wal():
            _log.warning(
                "collection %s has a write-ahead log, which keeps erased text until later "
                "writes rotate it; re-index into a new collection (created without one) "
                "for the erasure bound of docs/operating.md",
                self.collection,
            )

    def _has_wal(self) -> bool:
        return (self._root / self.collection / "wal").exists()

    def close(self) -> None:
        with self._write_lock:
            for shard in (self._shard, self._states):
                if shard is not None:
                    shard.flush()
                    shard.close()
            self._shard = self._states = None

    def _ready(self) -> qe.EdgeShard:
        if self._shard is None:
            raise RuntimeError("collection not created yet: call ensure_collection() first")
        return self._shard

    def _ready_states(self) -> qe.EdgeShard:
        if self._states is None:
            raise RuntimeError("collection not created yet: call ensure_collection() first")
        return self._states

    def _read_aliases(self) -> dict[str, str]:
        path = self._root / "aliases.json"
        return dict(json.loads(path.read_text())) if path.exists() else {}

    def _write_aliases(self, aliases: dict[str, str]) -> None:
        self._root.mkdir(parents=True, exist_ok=True)
        tmp = self._root / "aliases.json.tmp"
        tmp.write_text(json.dumps(aliases, indent=2))
        os.replace(tmp, self._root / "aliases.json")


_STATE_VECTOR = "state"
# The state shard needs a vector; each record carries the constant [1.0].
_STATE_VECTORS = {_STATE_VECTOR: qe.EdgeVectorParams(size=1, distance=qe.Distance.Dot)}
_SPARSE_VECTORS = {SPARSE_VECTOR_NAME: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)}
# The engine runs its optimizers only when asked (``optimize``), which only
# ``purge_deleted`` does: then any segment with a deleted point is rewritten without it,
# and nothing else (indexing_threshold 0: no HNSW build, which holds the GIL for minutes).
# The vacuum holds it too, about 1.2 s per 30k chunks on the benchmark machine.
_VACUUM_ON_PURGE = qe.EdgeOptimizersConfig(
    deleted_threshold=1e-9, vacuum_min_vector_number=0, indexing_threshold=0
)


def _prepared(shard: qe.EdgeShard) -> qe.EdgeShard:
    """``shard`` with every payload index, and access keys on every point (see below)."""
    for field, kind in PAYLOAD_INDEXES.items():
        shard.update(qe.UpdateOperation.create_field_index(field, index_schema(kind)))
    _backfill_access_keys(shard)
    return shard


def _backfill_access_keys(shard: qe.EdgeShard) -> None:
    missing = qe.Filter(must=[qe.IsEmptyCondition(ACCESS_KEYS)])

    def scroll_missing(offset: qe.PointId | None) -> PointRecords:
        records, after = shard.scroll(
            qe.ScrollRequest(offset=offset, limit=256, filter=missing, with_payload=True)
        )
        return [(r.id, dict(r.payload or {})) for r in records], after

    def set_keys(point: qe.PointId, update: dict[str, Any]) -> None:
        shard.update(qe.UpdateOperation.set_payload([point], update))

    backfill_access_keys(scroll_missing, set_keys)


def _load_chunk_shard(path: Path) -> tuple[qe.EdgeShard, bool]:
    """The chunk shard at ``path`` and whether it has the lexical vector: loading with it
    in the config fails on a shard without it (edge 0.9 shows no loaded shard's config)."""
    try:
        config = qe.EdgeConfig(sparse_vectors=_SPARSE_VECTORS, optimizers=_VACUUM_ON_PURGE)
        return qe.EdgeShard.load(str(path), config), True
    except Exception:  # the engine raises a bare Exception for an incompatible config
        _log.warning(LEGACY_COLLECTION_WARNING, path.name)
        return qe.EdgeShard.load(str(path)), False


def _open_shard(path: Path, vectors: dict[str, qe.EdgeVectorParams]) -> qe.EdgeShard:
    if path.exists():
        return qe.EdgeShard.load(str(path))
    return qe.EdgeShard.create(str(path), qe.EdgeConfig(vectors=vectors))
