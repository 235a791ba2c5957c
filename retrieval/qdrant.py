"""Server adapter: a Qdrant server or cluster through ``qdrant-client``.

A cluster is named by its nodes' URLs: a request that a node does not answer (refused,
timed out, a 5xx) goes to the next one; when none answers, ``UpstreamUnavailable`` (the
API's 503 with ``Retry-After``; the ingest worker retries it). Every store call is
idempotent, so trying it again elsewhere is safe. Collections this adapter creates get
``shards`` shards of ``replicas`` copies each.

The only module that imports ``qdrant_client``. Tests run it against a real server
(``../shared/bin/qdrant``) and against the client's ``:memory:`` mode, which stands in
for one (too slow to serve in production, and it ignores payload indexes).

A collection created before the ``lexical`` sparse vector is served dense-only until
rebuilt (:mod:`retrieval.store`).
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from http import HTTPStatus
from typing import Any, Concatenate, ParamSpec, TypeVar

import httpx
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from acl.filter import PermissionFilter
from core.errors import UpstreamUnavailable
from retrieval.qdrant_query import (
    index_schema,
    match,
    minor_version,
    permission_filter,
    query_args,
    scopes_idf,
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

_P = ParamSpec("_P")
_R = TypeVar("_R")

# How long a caller is told to wait when no node answers: a node restarts, or a replica
# takes over its shards, within seconds.
RETRY_AFTER_S = 2


def _node_failure(error: Exception) -> bool:
    """A failure of the node asked rather than of the request: another node may answer."""
    if isinstance(error, UnexpectedResponse):
        return (error.status_code or 0) >= HTTPStatus.INTERNAL_SERVER_ERROR
    return isinstance(error, ResponseHandlingException | httpx.TransportError | ConnectionError)


def _failover(
    method: Callable[Concatenate[QdrantServerStore, _P], _R],
) -> Callable[Concatenate[QdrantServerStore, _P], _R]:
    """Run ``method``; on a node failure, again on each other node in turn."""

    def run(store: QdrantServerStore, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        failures: list[str] = []
        for _ in store._clients:
            asked = store._node
            try:
                return method(store, *args, **kwargs)
            except Exception as error:
                if not _node_failure(error):
                    raise
                failures.append(f"{store._urls[asked]}: {error}")
                store._next_node(asked)
        raise UpstreamUnavailable(
            f"no Qdrant node answered ({'; '.join(failures)})", code="store_unavailable"
        ).retry_in(RETRY_AFTER_S)

    functools.update_wrapper(run, method)
    return run


class QdrantServerStore:
    """The vector store on a Qdrant server, addressed through the collection alias."""

    def __init__(
        self,
        clients: QdrantClient | Sequence[QdrantClient],
        *,
        alias: str,
        urls: Sequence[str] = (),
        shards: int = 1,
        replicas: int = 1,
    ):
        self._clients = [clients] if isinstance(clients, QdrantClient) else list(clients)
        self._urls = list(urls) or [f"node {i}" for i in range(len(self._clients))]
        self._node = 0
        self._node_lock = threading.Lock()
        self._shards = shards
        self._replicas = replicas
        self._alias = alias
        self._states: str | None = None
        self._name: str | None = None
        self._lexical = True
        self._scoped_idf = True

    @property
    def collection(self) -> str:
        if self._name is None:
            raise RuntimeError("collection not created yet: call ensure_collection() first")
        return self._name

    @property
    def lexical(self) -> bool:
        """Whether sparse/hybrid search runs: the collection has the ``lexical`` sparse
        vector and the server counts IDF over what the caller may read."""
        return self._lexical and self._scoped_idf

    @property
    def _client(self) -> QdrantClient:
        """The node asked now."""
        return self._clients[self._node]

    def _next_node(self, failed: int) -> None:
        """Ask the node after ``failed`` from now on (unless another thread moved on)."""
        with self._node_lock:
            if self._node == failed:
                self._node = (failed + 1) % len(self._clients)
                _log.warning(
                    "Qdrant node %s did not answer; asking %s",
                    self._urls[failed],
                    self._urls[self._node],
                )

    def nodes(self) -> dict[str, bool]:
        """Each node's own readiness (``/readyz``): what ``GET /readyz`` shows of a cluster."""
        ready: dict[str, bool] = {}
        for url in self._urls:
            if not url.startswith("http"):
                continue
            try:
                response = httpx.get(f"{url.rstrip('/')}/readyz", timeout=1.0)
                ready[url] = response.status_code == HTTPStatus.OK
            except httpx.HTTPError:
                ready[url] = False
        return ready

    @classmethod
    def connect(
        cls,
        url: str,
        *,
        api_key: str | None,
        alias: str,
        shards: int = 1,
        replicas: int = 1,
        timeout_s: float = 10.0,
    ) -> QdrantServerStore:
        """``url``: one server, ``:memory:`` (qdrant-client's stand-in), or the
        comma-separated URLs of a cluster's nodes."""
        if url == ":memory:":
            return cls(QdrantClient(location=url), alias=alias, urls=[url])
        urls = [part.strip() for part in url.split(",") if part.strip()]
        # The client's own version check runs in a thread of its own and warns there,
        # where no caller can handle it: ensure_collection checks the version instead.
        clients = [
            QdrantClient(
                url=node, api_key=api_key, timeout=int(timeout_s), check_compatibility=False
            )
            for node in urls
        ]
        return cls(clients, alias=alias, urls=urls, shards=shards, replicas=replicas)

    @_failover
    def ensure_collection(self, *, dim: int, model: str, name: str | None = None) -> None:
        name = self._alias_target() or name or versioned_collection(self._alias, model, dim)
        self._name, self._states = name, state_collection(name)
        self._check_server()
        self._create_missing(
            self._states,
            vectors_config={
                _STATE_VECTOR: models.VectorParams(size=1, distance=models.Distance.DOT)
            },
        )
        if self._client.collection_exists(self._alias):
            self._lexical = self._has_lexical(self._alias)
            self._prepare(self._alias)
            return
        if not self._create_missing(
            name,
            vectors_config={
                VECTOR_NAME: models.VectorParams(size=dim, distance=models.Distance.COSINE)
            },
            sparse_vectors_config={
                SPARSE_VECTOR_NAME: models.SparseVectorParams(modifier=models.Modifier.IDF)
            },
        ):
            self._lexical = self._has_lexical(name)
        self._prepare(name)
        try:
            self._client.update_collection_aliases(
                change_aliases_operations=[
                    models.CreateAliasOperation(
                        create_alias=models.CreateAlias(
                            collection_name=name, alias_name=self._alias
                        )
                    )
                ]
            )
        except UnexpectedResponse as error:
            # Another process starting at the same time made the alias first.
            if (error.status_code or 0) >= HTTPStatus.INTERNAL_SERVER_ERROR or (
                self._alias_target() != name
            ):
                raise

    def _check_server(self) -> None:
        """Warn about a server outside qdrant-client's range (one minor version either
        way), and serve sparse and hybrid search only where the server counts IDF over
        the caller's readable set: elsewhere a document the caller cannot read would move
        their scores (a side channel), so they run dense, warned. Chunks keep their
        lexical vectors for the upgraded server."""
        version = self._client.info().version
        client = minor_version(importlib.metadata.version("qdrant-client"))
        server = minor_version(version)
        if not (client and server and client[0] == server[0] and abs(client[1] - server[1]) <= 1):
            _log.warning(UNSUPPORTED_SERVER_WARNING, version)
        self._scoped_idf = scopes_idf(version)
        if not self._scoped_idf:
            _log.warning(UNSCOPED_IDF_WARNING, version)

    def _create_missing(self, name: str, **config: Any) -> bool:
        """Create collection ``name`` unless it exists; whether this call created it.

        Processes opening a new alias together (a worker and API replicas starting) all
        find it missing and all create it: the server answers every one but the first
        409 Conflict, which means it is there now.
        """
        if self._client.collection_exists(name):
            return False
        try:
            self._client.create_collection(
                name,
                shard_number=self._shards,
                replication_factor=self._replicas,
                **config,
            )
        except UnexpectedResponse as error:
            if error.status_code != HTTPStatus.CONFLICT:
                raise
            return False
        return True

    @_failover
    def binding(self) -> dict[str, Any] | None:
        records = self._client.retrieve(
            self._ready_states(), ids=[BINDING_POINT_ID], with_payload=True
        )
        return dict(records[0].payload or {}) if records else None

    @_failover
    def record_binding(self, record: dict[str, Any]) -> None:
        point = models.PointStruct(
            id=BINDING_POINT_ID, vector={_STATE_VECTOR: [1.0]}, payload=record
        )
        self._client.upsert(self._ready_states(), points=[point], wait=True)

    @_failover
    def promote(self, alias: str) -> str | None:
        targets = {a.alias_name: a.collection_name for a in self._client.get_aliases().aliases}
        operations: list[models.AliasOperations] = [
            models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=name))
            for name in (alias, self._alias)
            if name in targets
        ]
        operations.append(
            models.CreateAliasOperation(
                create_alias=models.CreateAlias(collection_name=self.collection, alias_name=alias)
            )
        )
        # One request: the server applies the alias changes atomically.
        self._client.update_collection_aliases(change_aliases_operations=operations)
        self._alias = alias
        return targets.get(alias)

    @_failover
    def drop_collection(self, name: str) -> None:
        holders = [
            a.alias_name for a in self._client.get_aliases().aliases if a.collection_name == name
        ]
        if holders or name == self._name:
            raise ValueError(f"collection {name!r} is in use (aliases: {holders or 'this store'})")
        for collection in (name, state_collection(name)):
            self._client.delete_collection(collection)

    def _prepare(self, collection: str) -> None:
        """Every payload index (creating one that exists is a no-op), and access keys on
        every point stored before they existed: until then the filter matches none of them.
        """
        existing = self._client.get_collection(collection).payload_schema or {}
        with warnings.catch_warnings():
            # Local mode warns that payload indexes have no effect there.
            warnings.simplefilter("ignore", UserWarning)
            for field, kind in PAYLOAD_INDEXES.items():
                if field not in existing:
                    self._client.create_payload_index(
                        collection, field, index_schema(kind), wait=True
                    )
        self._backfill_access_keys(collection)

    def _backfill_access_keys(self, collection: str) -> None:
        missing = models.Filter(
            must=[models.IsEmptyCondition(is_empty=models.PayloadField(key=ACCESS_KEYS))]
        )

        def scroll_missing(offset: models.ExtendedPointId | None) -> PointRecords:
            records, after = self._client.scroll(
                collection, scroll_filter=missing, limit=256, offset=offset, with_payload=True
            )
            return [(r.id, dict(r.payload or {})) for r in records], after

        def set_keys(point: models.ExtendedPointId, update: dict[str, Any]) -> None:
            self._client.set_payload(collection, update, points=[point], wait=True)

        backfill_access_keys(scroll_missing, set_keys)

    @_failover
    def upsert(self, points: Sequence[ChunkPoint]) -> None:
        if not points:
            return
        self._client.upsert(
            self._alias,
            points=[
                models.PointStruct(id=p.id, vector=self._vectors(p), payload=p.payload())
                for p in points
            ],
            wait=True,
        )

    @_failover
    def delete_document(self, tenant: str, doc_id: str, *, from_chunk: int = 0) -> None:
        must: list[models.Condition] = [match("tenant", tenant), match("doc_id", doc_id)]
        if from_chunk > 0:
            must.append(models.FieldCondition(key="chunk_no", range=models.Range(gte=from_chunk)))
        self._client.delete(
            self._alias,
            points_selector=models.FilterSelector(filter=models.Filter(must=must)),
            wait=True,
        )

    @_failover
    def set_payload(self, tenant: str, doc_id: str, payload: dict[str, Any]) -> None:
        self._client.set_payload(
            self._alias,
            payload=payload,
            points=models.Filter(must=[match("tenant", tenant), match("doc_id", doc_id)]),
            wait=True,
        )

    def _has_lexical(self, collection: str) -> bool:
        sparse = self._client.get_collection(collection).config.params.sparse_vectors or {}
        if SPARSE_VECTOR_NAME not in sparse:
            _log.warning(LEGACY_COLLECTION_WARNING, collection)
            return False
        return True

    def _vectors(self, point: ChunkPoint) -> dict[str, models.Vector]:
        if not self._lexical:
            return {VECTOR_NAME: point.vector}
        return {VECTOR_NAME: point.vector, SPARSE_VECTOR_NAME: sparse_vector(point.lexical)}

    @_failover
    def search(
        self,
        query: SearchQuery | Sequence[float],
        *,
        permission: PermissionFilter,
        limit: int,
    ) -> list[Hit]:
        wanted = as_search_query(query)
        if not self.lexical:  # warned at open: served dense until re-indexed or upgraded
            wanted = wanted.dense_only()
        permitted = permission_filter(permission)
        response = self._client.query_points(
            self._alias, **query_args(wanted, permitted, limit), limit=limit, with_payload=True
        )
        return hits_of(wanted, response.points)

    @_failover
    def document_states(self, keys: Sequence[DocumentKey]) -> dict[DocumentKey, DocumentState]:
        if not keys:
            return {}
        records = self._client.retrieve(
            self._ready_states(), ids=[state_point_id(*key) for key in keys], with_payload=True
        )
        return states_by_key(record.payload for record in records)

    @_failover
    def put_document_states(self, states: Mapping[DocumentKey, DocumentState]) -> None:
        if not states:
            return
        self._client.upsert(
            self._ready_states(),
            points=[
                models.PointStruct(
                    id=state_point_id(*key),
                    vector={_STATE_VECTOR: [1.0]},
                    payload=state.to_payload(key),
                )
                for key, state in states.items()
            ],
            wait=True,
        )

    def _ready_states(self) -> str:
        if self._states is None:
            raise RuntimeError("collection not created yet: call ensure_collection() first")
        return self._states

    def _alias_target(self) -> str | None:
        for alias in self._client.get_aliases().aliases:
            if alias.alias_name == self._alias:
                return alias.collection_name
        return None

    @_failover
    def count(self, *, tenant: str | None = None, doc_id: str | None = None) -> int:
        must: list[models.Condition] = [
            match(key, value)
            for key, value in (("tenant", tenant), ("doc_id", doc_id))
            if value is not None
        ]
        return self._client.count(
            self._alias, count_filter=models.Filter(must=must), exact=True
        ).count

    def chunks(self, *, tenant: str) -> Iterator[StoredChunk]:
        offset: models.ExtendedPointId | None = None
        while True:
            records, offset = self._chunk_page(tenant, offset)
            for record in records:
                yield StoredChunk.from_payload(dict(record.payload or {}))
            if offset is None:
                return

    @_failover
    def _chunk_page(
        self, tenant: str, offset: models.ExtendedPointId | None
    ) -> tuple[list[models.Record], models.ExtendedPointId | None]:
        return self._client.scroll(
            self._alias,
            scroll_filter=models.Filter(must=[match("tenant", tenant)]),
            limit=256,
            offset=offset,
            with_payload=True,
            with_vectors=False,
        )

    def purge_deleted(self) -> None:
        """Nothing to do now: a Qdrant server drops deleted points from its segments when
        its vacuum optimizer runs (``deleted_threshold``) and from its write-ahead log as
        the log rotates (``wal_capacity_mb``); no API call forces either."""

    def close(self) -> None:
        for client in self._clients:
            client.close()


_STATE_VECTOR = "state"

UNSUPPORTED_SERVER_WARNING = (
    "Qdrant server %s is more than one minor version away from qdrant-client "
    "(docs/operating.md, Upgrades)"
)
UNSCOPED_IDF_WARNING = (
    "Qdrant server %s cannot count IDF over the caller's readable set (Qdrant 1.19 can): "
    "sparse and hybrid searches run dense until it is upgraded"
)
