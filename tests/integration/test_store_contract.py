"""One behavioural suite for both vector-store adapters: the embedded engine
(qdrant-edge-py) and the server adapter (qdrant-client; ``:memory:`` stands in)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from acl.filter import PermissionFilter, RequestFilter
from acl.models import DocumentAcl, Principal
from retrieval.qdrant import QdrantServerStore
from retrieval.qdrant_edge import EdgeStore
from retrieval.records import DocumentFields, StoredChunk
from retrieval.schema import ChunkPoint, point_id
from retrieval.store import VectorStore

pytestmark = pytest.mark.integration
DIM = 8


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
            users=tuple(acl.get("users", [])),  # type: ignore[call-overload]
            groups=tuple(acl.get("groups", [])),  # type: ignore[call-overload]
            public=bool(acl.get("public", False)),
        ),
        metadata={"department": acl.get("department", "none")},
    )
    chunk = StoredChunk(document, chunk_no, f"{doc_id} chunk {chunk_no}")
    return ChunkPoint(point_id(tenant, doc_id, chunk_no), _vector(seed), chunk)


@pytest.fixture(params=["edge", "server"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorStore]:
    if request.param == "edge":
        opened: VectorStore = EdgeStore(tmp_path / "qdrant", alias="chunks")
    else:
        opened = QdrantServerStore.connect(":memory:", api_key=None, alias="chunks")
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
        "acme", "hr-salaries", {"acl_users": [], "acl_groups": ["finance"], "acl_public": False}
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
