"""What only a real Qdrant server can show about the server adapter (retrieval/qdrant.py):
qdrant-client's ``:memory:`` stand-in ignores payload indexes, answers one caller at a
time and has no readers to race. Here the server (../shared/bin/qdrant, skipped with the
reason where it is absent) is asked, over its own REST API, what the adapter built: the
payload indexes of ``retrieval.schema.PAYLOAD_INDEXES`` (the tenant one a tenant index),
the alias naming the versioned collection, an alias switched in one step under readers,
and one collection when several processes open a new alias at once.

The behavioural suite runs on the same server in test_store_contract.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
from qdrant_client import models

from acl.filter import PermissionFilter
from acl.models import DocumentAcl, Principal
from retrieval.qdrant import QdrantServerStore
from retrieval.qdrant_query import scopes_idf
from retrieval.query import SearchQuery
from retrieval.records import DocumentFields, StoredChunk
from retrieval.schema import (
    PAYLOAD_INDEXES,
    SPARSE_VECTOR_NAME,
    VECTOR_NAME,
    ChunkPoint,
    point_id,
    state_collection,
    versioned_collection,
)
from retrieval.sparse import LexicalEncoder
from tests.qdrant_server import QdrantTestServer

pytestmark = pytest.mark.integration
DIM = 4
LEXICAL = LexicalEncoder()
READER = PermissionFilter.for_principal(Principal(tenant="acme", user_id="reader"))
# The server's payload_schema data_type of each index kind.
DATA_TYPES = {
    "tenant_keyword": "keyword",
    "keyword": "keyword",
    "integer": "integer",
    "bool": "bool",
}


@pytest.fixture
def aliases(qdrant_server: QdrantTestServer) -> Iterator[list[str]]:
    """Aliases of this test's own (append fresh ones); their collections dropped after."""
    mine: list[str] = []
    yield mine
    qdrant_server.drop(*mine)


def _fresh(server: QdrantTestServer, aliases: list[str]) -> str:
    aliases.append(server.fresh_alias())
    return aliases[-1]


def _open(server: QdrantTestServer, alias: str) -> QdrantServerStore:
    store = QdrantServerStore.connect(server.url, api_key=None, alias=alias)
    store.ensure_collection(dim=DIM, model="m")
    return store


def _point(doc_id: str, *, text: str = "", acl: DocumentAcl | None = None) -> ChunkPoint:
    """A one-chunk document of tenant acme, public unless ``acl`` says otherwise."""
    document = DocumentFields(
        tenant="acme",
        doc_id=doc_id,
        version=1,
        source="wiki",
        acl=acl or DocumentAcl(public=True),
    )
    text = text or f"{doc_id} text"
    return ChunkPoint(
        point_id("acme", doc_id, 0),
        [0.5] * DIM,
        StoredChunk(document, 0, text),
        LEXICAL.encode_document(text),
    )


def _assert_indexed(server: QdrantTestServer, collection: str) -> None:
    schema = server.get(f"/collections/{collection}")["payload_schema"]
    assert set(schema) == set(PAYLOAD_INDEXES), schema
    for field, kind in PAYLOAD_INDEXES.items():
        assert schema[field]["data_type"] == DATA_TYPES[kind], (field, schema[field])
        is_tenant = schema[field].get("params", {}).get("is_tenant", False)
        assert is_tenant == (kind == "tenant_keyword"), (field, schema[field])


def test_the_alias_names_the_versioned_collection_with_every_payload_index(
    qdrant_server: QdrantTestServer, aliases: list[str]
) -> None:
    alias = _fresh(qdrant_server, aliases)
    store = _open(qdrant_server, alias)
    name = versioned_collection(alias, "m", DIM)
    assert store.collection == name
    assert qdrant_server.aliases()[alias] == name
    assert {c for c in qdrant_server.collections() if c.startswith(alias)} == {
        name,
        state_collection(name),
    }
    _assert_indexed(qdrant_server, name)
    store.upsert([_point("a"), _point("b")])
    # The indexes hold the stored points (the stand-in keeps none).
    schema = qdrant_server.get(f"/collections/{alias}")["payload_schema"]
    assert schema["tenant"]["points"] == schema["acl_keys"]["points"] == 2
    store.close()


def test_a_collection_made_without_indexes_gains_them_when_opened(
    qdrant_server: QdrantTestServer, aliases: list[str]
) -> None:
    alias = _fresh(qdrant_server, aliases)
    name = versioned_collection(alias, "m", DIM)
    client = qdrant_server.client()
    client.create_collection(
        name,
        vectors_config={
            VECTOR_NAME: models.VectorParams(size=DIM, distance=models.Distance.COSINE)
        },
        sparse_vectors_config={
            SPARSE_VECTOR_NAME: models.SparseVectorParams(modifier=models.Modifier.IDF)
        },
    )
    client.close()
    assert qdrant_server.get(f"/collections/{name}")["payload_schema"] == {}
    store = _open(qdrant_server, alias)
    _assert_indexed(qdrant_server, name)
    assert qdrant_server.aliases()[alias] == name
    store.close()


def _ensure_all_at_once(stores: list[QdrantServerStore]) -> list[BaseException]:
    """``ensure_collection`` on every store, each in a thread, released together; the
    errors they raised."""
    start = threading.Barrier(len(stores))
    failures: list[BaseException] = []

    def open_store(store: QdrantServerStore) -> None:
        start.wait()
        try:
            store.ensure_collection(dim=DIM, model="m")
        except Exception as error:  # noqa: BLE001 - returned to the test, which asserts
            failures.append(error)

    threads = [threading.Thread(target=open_store, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return failures


def test_processes_opening_a_new_alias_at_once_share_one_collection(
    qdrant_server: QdrantTestServer, aliases: list[str]
) -> None:
    """Workers and API replicas starting together each find no collection and create it:
    the server answers all but the first with 409, which means "it is there now"."""
    for _ in range(3):  # the race is likely, not certain, in one round
        alias = _fresh(qdrant_server, aliases)
        stores = [
            QdrantServerStore.connect(qdrant_server.url, api_key=None, alias=alias)
            for _ in range(4)
        ]
        assert _ensure_all_at_once(stores) == []
        name = versioned_collection(alias, "m", DIM)
        assert {s.collection for s in stores} == {name}
        assert qdrant_server.aliases()[alias] == name
        _assert_indexed(qdrant_server, name)
        stores[0].upsert([_point("shared")])
        assert all(s.count() == 1 for s in stores)
        for store in stores:
            store.close()


def _wait_until(check: Callable[[], bool], what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout_s}s: {what}"
        time.sleep(0.01)


def test_promote_switches_an_alias_in_one_step_under_readers(
    qdrant_server: QdrantTestServer, aliases: list[str]
) -> None:
    """Readers of the serving alias see the old collection or the new one, never neither
    (the server applies the batch of alias changes under one lock); a collection an alias
    names cannot be dropped, and once none does it goes with its companion."""
    serving, staging = _fresh(qdrant_server, aliases), _fresh(qdrant_server, aliases)
    old = _open(qdrant_server, serving)
    new = _open(qdrant_server, staging)
    old.upsert([_point("old")])
    new.upsert([_point("new")])
    reader = _open(qdrant_server, serving)
    seen: list[frozenset[str]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                hits = reader.search([0.5] * DIM, permission=READER, limit=5)
            except Exception as error:  # noqa: BLE001 - reported by the assertion below
                errors.append(error)
            else:
                seen.append(frozenset(hit.doc_id for hit in hits))

    old_hits, new_hits = frozenset({"old"}), frozenset({"new"})
    thread = threading.Thread(target=read)
    thread.start()
    try:
        _wait_until(lambda: old_hits in seen, "the reader reads the old collection")
        with pytest.raises(ValueError, match="in use"):
            new.drop_collection(old.collection)
        assert new.promote(serving) == old.collection
        assert serving in qdrant_server.aliases() and staging not in qdrant_server.aliases()
        for _ in range(10):  # switch back and forth while the reader reads
            assert old.promote(serving) == new.collection
            assert new.promote(serving) == old.collection
        count = len(seen)
        _wait_until(lambda: len(seen) > count and seen[-1] == new_hits, "the reader reads new")
    finally:
        stop.set()
        thread.join(timeout=60)
    assert errors == []
    assert set(seen) == {old_hits, new_hits}
    assert qdrant_server.aliases()[serving] == new.collection

    # Reopened, the alias wins over the name the model would give.
    reopened = _open(qdrant_server, serving)
    assert reopened.collection == new.collection
    with pytest.raises(ValueError, match="in use"):
        old.drop_collection(new.collection)
    new.drop_collection(old.collection)
    assert old.collection not in qdrant_server.collections()
    assert state_collection(old.collection) not in qdrant_server.collections()
    for store in (old, new, reader, reopened):
        store.close()


def test_a_document_the_caller_cannot_read_never_moves_their_lexical_scores(
    qdrant_server: QdrantTestServer, aliases: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    """Qdrant counts IDF over the permission filter from 1.19 on (``SearchParams.idf``);
    an older server ignores that parameter and counts every point, so hidden documents
    would move a caller's BM25 scores. The adapter serves sparse and hybrid search only
    where the server scopes IDF, and runs them dense, warned, elsewhere."""
    store = _open(qdrant_server, _fresh(qdrant_server, aliases))
    version = qdrant_server.version()
    assert store.lexical == scopes_idf(version), version
    assert store.lexical or "cannot count IDF over the caller's readable set" in caplog.text
    store.upsert([_point("handbook", text="The zyxomorph badge renewal procedure")])
    terms = LEXICAL.encode_query("zyxomorph badge")

    def scores() -> list[list[tuple[str, float | None]]]:
        found = []
        for mode in ("sparse", "hybrid"):
            query = SearchQuery([0.5] * DIM, lexical=terms, mode=mode)
            hits = store.search(query, permission=READER, limit=5)
            found.append([(hit.doc_id, hit.rank_score) for hit in hits])
        return found

    before = scores()
    hidden = DocumentAcl(users=("someone-else",))
    store.upsert([_point(f"secret-{i}", text="zyxomorph", acl=hidden) for i in range(5)])
    assert scores() == before
    store.close()
