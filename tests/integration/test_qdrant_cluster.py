"""The server adapter on a real three-node Qdrant cluster (../shared/bin/qdrant; skipped,
with the reason, only where it is absent), as ``headwater up --scale`` and the scale-out
chaos bench run it: a collection of 3 shards with 2 copies each, every process given all
the nodes' URLs.

A node killed with -9 loses no point and stops no search, write or state lookup (the
adapter moves to the next node; the cluster serves the dead node's shards from their
other copies); restarted on its storage, the node rejoins and its copies catch up with
the writes it missed. Where no node answers, the store raises ``UpstreamUnavailable``
with a ``Retry-After``, which the API turns into a 503 and the worker retries.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from acl.filter import PermissionFilter
from acl.models import DocumentAcl, Principal
from core.errors import UpstreamUnavailable
from deploy.process import free_port
from deploy.scale import QdrantCluster
from retrieval.qdrant import RETRY_AFTER_S, QdrantServerStore
from retrieval.records import DocumentFields, StoredChunk
from retrieval.schema import ChunkPoint, DocumentState, point_id
from retrieval.sparse import LexicalEncoder
from tests.qdrant_server import missing_binary_reason

pytestmark = pytest.mark.integration
DIM = 4
LEXICAL = LexicalEncoder()
READER = PermissionFilter.for_principal(Principal(tenant="acme", user_id="reader"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QdrantCluster]:
    reason = missing_binary_reason()
    if reason:
        pytest.skip(reason)
    nodes = QdrantCluster(tmp_path_factory.mktemp("cluster"), nodes=3)
    try:
        nodes.start()
        assert _eventually(lambda: nodes.peers() == 3, 30), "the nodes never formed one cluster"
        yield nodes
    finally:
        nodes.stop()


def _eventually(check: object, timeout_s: float) -> bool:
    assert callable(check)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.5)
    return False


def _points(start: int, count: int) -> list[ChunkPoint]:
    points = []
    for n in range(start, start + count):
        document = DocumentFields(
            tenant="acme", doc_id=f"doc-{n}", version=1, source="wiki", acl=DocumentAcl(public=True)
        )
        text = f"document {n} about shards"
        vector = [1.0, n % 7 / 7, n % 5 / 5, 0.1]
        points.append(
            ChunkPoint(
                point_id("acme", f"doc-{n}", 0),
                vector,
                StoredChunk(document, 0, text),
                LEXICAL.encode_document(text),
            )
        )
    return points


def _store(urls: list[str], alias: str) -> QdrantServerStore:
    store = QdrantServerStore.connect(
        ",".join(urls), api_key=None, alias=alias, shards=3, replicas=2, timeout_s=5
    )
    store.ensure_collection(dim=DIM, model="m")
    return store


def test_a_killed_node_loses_nothing_and_catches_up_when_it_returns(
    cluster: QdrantCluster,
) -> None:
    alias = "chunks_failover"
    store = _store(cluster.urls, alias)
    assert sorted(cluster.replica_states(alias).items()) == [("Active", 6)]
    store.upsert(_points(0, 300))
    store.put_document_states({("acme", "doc-0"): DocumentState(version=1)})

    cluster.kill(0)  # the node every process asks first
    try:
        # Reads and writes go on through the other nodes, from the shards' other copies.
        assert store.count(tenant="acme") == 300
        assert len(store.search([1.0, 0.5, 0.5, 0.1], permission=READER, limit=10)) == 10
        assert store.document_states([("acme", "doc-0")])[("acme", "doc-0")].version == 1
        store.upsert(_points(300, 100))
        store.delete_document("acme", "doc-1")
        assert store.count(tenant="acme") == 399
    finally:
        cluster.restart(0)

    # The returned node's copies catch up (the cluster transfers what it missed) ...
    assert _eventually(lambda: cluster.replica_states(alias) == {"Active": 6}, 120), (
        cluster.replica_states(alias)
    )
    # ... so that each node alone, asked first, counts every point.
    for url in cluster.urls:
        alone = QdrantServerStore.connect(url, api_key=None, alias=alias)
        alone.ensure_collection(dim=DIM, model="m")
        try:
            assert alone.count(tenant="acme") == 399, url
        finally:
            alone.close()
    store.close()


def test_no_node_answering_is_a_retryable_unavailability(tmp_path: Path) -> None:
    nowhere = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
    store = QdrantServerStore.connect(",".join(nowhere), api_key=None, alias="chunks")
    with pytest.raises(UpstreamUnavailable) as raised:
        store.count()
    assert raised.value.retry_after_s == RETRY_AFTER_S
    assert all(url in raised.value.message for url in nowhere)


def test_a_dead_url_in_the_list_is_passed_over(cluster: QdrantCluster) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    store = _store([dead, *cluster.urls], "chunks_dead_url")
    store.upsert(_points(0, 5))
    assert store.count(tenant="acme") == 5
    assert set(store.nodes()) == {dead, *cluster.urls}
    assert store.nodes()[dead] is False
    store.close()
