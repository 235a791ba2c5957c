"""One behavioural suite for both vector-store adapters: the embedded engine
(qdrant-edge-py) and the server adapter (qdrant-client), the latter on a real Qdrant
server (``server``: ../shared/bin/qdrant, skipped with the reason where it is absent) and
on qdrant-client's in-process ``:memory:`` stand-in (``memory``, which ignores payload
indexes): dense, sparse (BM25) and hybrid (fused) search, always under the permission
filter. Checks only a server can answer are in test_qdrant_server.py."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from acl.filter import PermissionFilter, RequestFilter
from acl.models import DocumentAcl, Principal
from retrieval.qdrant import QdrantServerStore
from retrieval.qdrant_edge import EdgeStore
from retrieval.query import SearchQuery
from retrieval.records import ACCESS_KEYS, DocumentFields, StoredChunk, acl_update
from retrieval.schema import ChunkPoint, point_id
from retrieval.sparse import LexicalEncoder
from retrieval.store import VectorStore
from tests.qdrant_server import QdrantTestServer

pytestmark = pytest.mark.integration
DIM = 8
LEXICAL = LexicalEncoder()
# What each document says: the handbook alone names the rare term "zyxomorph".
TEXTS = {
    "hr-salaries": "Salary bands and pay grades for every role",
    "alice-notes": "Alice's notes on the quarterly salary review",
    "handbook": "Employee handbook: the zyxomorph badge renewal procedure",
    "nobody": "Zyxomorph salary secrets nobody may read",
    "globex-public": "Globex zyxomorph salary handbook",
}


def _vector(seed: int) -> list[float]:
    raw = [math.sin(seed * (i + 1)) + 1.5 for i in range(DIM)]
    norm = math.sqrt(sum(v * v for v in raw))
    return [v / norm for v in raw]


def _point(tenant: str, doc_id: str, chunk_no: int, *, seed: int, **acl: object) -> ChunkPoint:
    document = DocumentFields(
        tenant=tenant,
        doc_id=doc_id,
        version=1,
        source=str(acl.pop("source", "wiki")),
        acl=DocumentAcl(
            users=tuple(acl.get("users", [])),  # type: ignore[arg-type]
            groups=tuple(acl.get("groups", [])),  # type: ignore[arg-type]
            public=bool(acl.get("public", False)),
        ),
        metadata={"department": acl.get("department", "none")},
    )
    text = TEXTS.get(doc_id, f"{doc_id} chunk {chunk_no}")
    chunk = StoredChunk(document, chunk_no, text)
    return ChunkPoint(
        point_id(tenant, doc_id, chunk_no), _vector(seed), chunk, LEXICAL.encode_document(text)
    )


ENGINES = ["edge", "memory", "server"]


@pytest.fixture
def server_alias(qdrant_server: QdrantTestServer) -> Iterator[str]:
    """An alias of this test's own on the shared server; its collections dropped after."""
    alias = qdrant_server.fresh_alias()
    yield alias
    qdrant_server.drop(alias)


def _server_store(engine: str, request: pytest.FixtureRequest) -> tuple[QdrantServerStore, str]:
    """The server adapter and its alias: on the stand-in, ``chunks``; on the real server,
    an alias of the test's own."""
    if engine == "memory":
        return QdrantServerStore.connect(":memory:", api_key=None, alias="chunks"), "chunks"
    server: QdrantTestServer = request.getfixturevalue("qdrant_server")
    alias: str = request.getfixturevalue("server_alias")
    return QdrantServerStore.connect(server.url, api_key=None, alias=alias), alias


@pytest.fixture(params=ENGINES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorStore]:
    opened: VectorStore
    if request.param == "edge":
        opened = EdgeStore(tmp_path / "qdrant", alias="chunks")
    else:
        opened, _ = _server_store(request.param, request)
    opened.ensure_collection(dim=DIM, model="test-model")
    opened.upsert(
        [
            _point("acme", "hr-salaries", 0, seed=1, groups=["hr"], department="hr"),
            _point("acme", "hr-salaries", 1, seed=2, groups=["hr"], department="hr"),
            _point("acme", "alice-notes", 0, seed=3, users=["alice"]),
            _point("acme", "handbook", 0, seed=4, public=True, source="drive"),
            _point("acme", "nobody", 0, seed=5),
            _point("globex", "globex-public", 0, seed=6, public=True),
        ]
    )
    yield opened
    opened.close()


def _docs(
    store: VectorStore, principal: Principal, request: RequestFilter | None = None
) -> set[str]:
    permission = PermissionFilter.for_principal(principal, request)
    return {hit.doc_id for hit in store.search(_vector(1), permission=permission, limit=50)}


def test_each_principal_sees_exactly_what_its_acl_allows(store: VectorStore) -> None:
    hr = Principal(tenant="acme", user_id="carol", groups=("hr",))
    alice = Principal(tenant="acme", user_id="alice", groups=("eng",))
    outsider = Principal(tenant="acme", user_id="mallory")
    assert _docs(store, hr) == {"hr-salaries", "handbook"}
    assert _docs(store, alice) == {"alice-notes", "handbook"}
    assert _docs(store, outsider) == {"handbook"}


def test_public_documents_never_cross_tenants(store: VectorStore) -> None:
    assert _docs(store, Principal(tenant="globex", user_id="alice", groups=("hr",))) == {
        "globex-public"
    }


def test_request_filters_narrow_and_never_widen(store: VectorStore) -> None:
    hr = Principal(tenant="acme", user_id="carol", groups=("hr",))
    assert _docs(store, hr, RequestFilter(source=["drive"])) == {"handbook"}
    assert _docs(store, hr, RequestFilter(metadata={"department": "hr"})) == {"hr-salaries"}
    assert _docs(store, hr, RequestFilter(doc_id=["nobody", "alice-notes"])) == set()


def test_search_ranks_by_cosine_similarity(store: VectorStore) -> None:
    hr = PermissionFilter.for_principal(Principal(tenant="acme", user_id="c", groups=("hr",)))
    hits = store.search(_vector(2), permission=hr, limit=1)
    assert [(h.doc_id, h.chunk_no) for h in hits] == [("hr-salaries", 1)]
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)


def test_upsert_overwrites_and_delete_removes_a_document(store: VectorStore) -> None:
    store.upsert([_point("acme", "hr-salaries", 0, seed=1, groups=["hr"])])
    assert store.count(doc_id="hr-salaries") == 2
    store.delete_document("acme", "hr-salaries", from_chunk=1)
    assert store.count(doc_id="hr-salaries") == 1
    store.delete_document("acme", "hr-salaries")
    assert store.count(doc_id="hr-salaries") == 0
    assert store.count(tenant="acme") == 3


def test_set_payload_replaces_the_acl_of_every_chunk(store: VectorStore) -> None:
    store.set_payload(
        "acme", "hr-salaries", acl_update("acme", DocumentAcl(groups=("finance",)), 2)
    )
    assert _docs(store, Principal(tenant="acme", user_id="c", groups=("hr",))) == {"handbook"}
    assert "hr-salaries" in _docs(store, Principal(tenant="acme", user_id="f", groups=("finance",)))


def test_edge_store_reopens_its_data(tmp_path: Path) -> None:
    first = EdgeStore(tmp_path / "q", alias="chunks")
    first.ensure_collection(dim=DIM, model="m")
    first.upsert([_point("acme", "d", 0, seed=1, public=True)])
    first.close()
    again = EdgeStore(tmp_path / "q", alias="chunks")
    again.ensure_collection(dim=DIM, model="m")
    assert again.count() == 1
    again.close()


def test_document_states_round_trip_and_tombstones(store: VectorStore) -> None:
    from retrieval.schema import DocumentState

    assert store.document_states([("acme", "hr-salaries")]) == {}
    store.put_document_states(
        {
            ("acme", "hr-salaries"): DocumentState(version=7, content_sha256="ab"),
            ("acme", "gone"): DocumentState(version=3, deleted=True),
        }
    )
    states = store.document_states([("acme", "hr-salaries"), ("acme", "gone"), ("acme", "never")])
    assert states == {
        ("acme", "hr-salaries"): DocumentState(version=7, content_sha256="ab"),
        ("acme", "gone"): DocumentState(version=3, deleted=True),
    }
    assert store.count(tenant="acme") == 5, "state records never count as chunks"


def test_chunks_lists_every_chunk_of_one_tenant(store: VectorStore) -> None:
    acme = sorted((c.doc_id, c.chunk_no) for c in store.chunks(tenant="acme"))
    assert acme == [
        ("alice-notes", 0),
        ("handbook", 0),
        ("hr-salaries", 0),
        ("hr-salaries", 1),
        ("nobody", 0),
    ]
    assert [c.doc_id for c in store.chunks(tenant="globex")] == ["globex-public"]


HR = Principal(tenant="acme", user_id="carol", groups=("hr",))
OUTSIDER = Principal(tenant="acme", user_id="mallory")


def _search(
    store: VectorStore, principal: Principal, words: str, *, seed: int = 1, **how: object
) -> list[tuple[str, int]]:
    query = SearchQuery(_vector(seed), lexical=LEXICAL.encode_query(words), **how)  # type: ignore[arg-type]
    permission = PermissionFilter.for_principal(principal)
    return [(h.doc_id, h.chunk_no) for h in store.search(query, permission=permission, limit=3)]


def _require_lexical(store: VectorStore) -> None:
    """Sparse and hybrid search run on this store. Only a Qdrant server older than 1.19
    declines them (it cannot count IDF over the caller's readable set, so the adapter
    runs them dense: test_qdrant_server.py); the test then says so rather than pass."""
    if isinstance(store, QdrantServerStore) and not store.lexical:
        pytest.skip("this Qdrant server cannot scope IDF (1.19 can): sparse runs dense on it")
    assert store.lexical


def test_sparse_search_finds_a_rare_term_that_dense_misses(store: VectorStore) -> None:
    _require_lexical(store)
    assert _search(store, HR, "zyxomorph", mode="dense")[0] != ("handbook", 0)
    assert _search(store, HR, "zyxomorph", mode="sparse") == [("handbook", 0)]
    # Stemmed and case-folded: "renewing badges" matches "badge renewal".
    assert _search(store, HR, "Renewing BADGES", mode="sparse") == [("handbook", 0)]


@pytest.mark.parametrize("fusion", ["rrf", "dbsf"])
def test_hybrid_search_returns_the_union_of_both_rankings(store: VectorStore, fusion: str) -> None:
    _require_lexical(store)
    dense = _search(store, HR, "zyxomorph", seed=2, mode="dense")
    hybrid = _search(store, HR, "zyxomorph", seed=2, mode="hybrid", fusion=fusion)
    assert dense[0] == ("hr-salaries", 1)
    assert set(hybrid[:2]) == {("hr-salaries", 1), ("handbook", 0)}
    assert set(hybrid) == set(dense) | {("handbook", 0)}


@pytest.mark.parametrize("mode", ["sparse", "hybrid"])
@pytest.mark.parametrize("rerank", ["none", "mmr"])
def test_lexical_matches_never_cross_the_permission_filter(
    store: VectorStore, mode: str, rerank: str
) -> None:
    # Every other chunk of acme says "salary" or "zyxomorph"; the outsider may read the
    # handbook alone, whose text has no "salary".
    found = _search(store, OUTSIDER, "zyxomorph salary secrets", mode=mode, rerank=rerank)
    assert found == [("handbook", 0)]
    assert set(_search(store, OUTSIDER, "salary", mode=mode, rerank=rerank)) <= {("handbook", 0)}
    globex = Principal(tenant="globex", user_id="alice", groups=("hr",))
    assert _search(store, globex, "zyxomorph", mode=mode, rerank=rerank) == [("globex-public", 0)]


def test_hit_scores_stay_cosine_similarities_in_every_mode(store: VectorStore) -> None:
    permission = PermissionFilter.for_principal(HR)
    for how in ({"mode": "sparse"}, {"mode": "hybrid"}, {"mode": "dense", "rerank": "mmr"}):
        query = SearchQuery(_vector(2), lexical=LEXICAL.encode_query("salary"), **how)  # type: ignore[arg-type]
        hits = {
            (h.doc_id, h.chunk_no): h for h in store.search(query, permission=permission, limit=3)
        }
        assert hits[("hr-salaries", 1)].score == pytest.approx(1.0, abs=1e-4), how
        assert hits[("hr-salaries", 1)].rank_score is not None


def test_mmr_trades_a_near_duplicate_for_a_different_chunk(store: VectorStore) -> None:
    twin = _point("acme", "handbook-copy", 0, seed=4, public=True)
    store.upsert([twin])
    relevance = _search(store, OUTSIDER, "x", seed=4, mode="dense", rerank="mmr", mmr_diversity=0)
    diverse = _search(store, OUTSIDER, "x", seed=4, mode="dense", rerank="mmr", mmr_diversity=1)
    assert set(relevance) == set(diverse) == {("handbook", 0), ("handbook-copy", 0)}
    store.upsert([_point("acme", "memo", 0, seed=9, public=True)])
    relevance = _search(store, OUTSIDER, "x", seed=4, mode="dense", rerank="mmr", mmr_diversity=0)
    diverse = _search(store, OUTSIDER, "x", seed=4, mode="dense", rerank="mmr", mmr_diversity=1)
    assert relevance[1][0].startswith("handbook") and diverse[1] == ("memo", 0)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_collection_built_before_the_lexical_vector_keeps_serving_dense(
    engine: str, request: pytest.FixtureRequest, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from retrieval.schema import versioned_collection

    legacy: VectorStore
    if engine == "edge":
        import qdrant_edge as qe

        name = versioned_collection("chunks", "m", DIM)
        dense = {"dense": qe.EdgeVectorParams(size=DIM, distance=qe.Distance.Cosine)}
        qe.EdgeShard.create(str(tmp_path / name), qe.EdgeConfig(vectors=dense)).close()
        legacy = EdgeStore(tmp_path, alias="chunks")
    else:
        from qdrant_client import models

        server, alias = _server_store(engine, request)
        name = versioned_collection(alias, "m", DIM)
        vectors = {"dense": models.VectorParams(size=DIM, distance=models.Distance.COSINE)}
        server._client.create_collection(name, vectors_config=vectors)
        legacy = server
    legacy.ensure_collection(dim=DIM, model="m")
    assert not legacy.lexical
    legacy.upsert([_point("acme", "handbook", 0, seed=4, public=True)])
    assert _search(legacy, OUTSIDER, "zyxomorph", mode="hybrid") == [("handbook", 0)]
    assert "no lexical vector" in caplog.text
    legacy.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_chunks_stored_before_access_keys_get_them_when_the_store_opens(
    engine: str, request: pytest.FixtureRequest, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The permission filter matches ``acl_keys`` alone: a point stored without them is
    readable by nobody until the adapter derives them from its own tenant and ACL."""
    points = [
        _point("acme", "hr-salaries", 0, seed=1, groups=["hr"]),
        _point("acme", "alice-notes", 0, seed=3, users=["alice"]),
        _point("acme", "handbook", 0, seed=4, public=True),
        _point("acme", "nobody", 0, seed=5),
        _point("globex", "globex-public", 0, seed=6, public=True),
    ]
    reopened: VectorStore
    if engine == "edge":
        import qdrant_edge as qe

        first = EdgeStore(tmp_path, alias="chunks")
        first.ensure_collection(dim=DIM, model="m")
        first.upsert(points)
        strip = qe.UpdateOperation.delete_payload([p.id for p in points], [ACCESS_KEYS])
        first._ready().update(strip)
        first.close()
        reopened = EdgeStore(tmp_path, alias="chunks")
    else:
        server, alias = _server_store(engine, request)
        server.ensure_collection(dim=DIM, model="m")
        server.upsert(points)
        client = server._client
        client.delete_payload(alias, keys=[ACCESS_KEYS], points=[p.id for p in points])
        assert not _docs(server, Principal(tenant="acme", user_id="x", groups=("hr",)))
        reopened = QdrantServerStore(client, alias=alias)
    reopened.ensure_collection(dim=DIM, model="m")
    assert "gave 4 stored chunks their access keys" in caplog.text  # "nobody" grants none
    assert _docs(reopened, Principal(tenant="acme", user_id="x", groups=("hr",))) == {
        "hr-salaries",
        "handbook",
    }
    assert _docs(reopened, Principal(tenant="acme", user_id="alice", groups=())) == {
        "alice-notes",
        "handbook",
    }
    assert _docs(reopened, Principal(tenant="globex", user_id="alice", groups=("hr",))) == {
        "globex-public"
    }
    reopened.close()
