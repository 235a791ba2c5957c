"""Versions, deletes, ACL changes and re-embedding rules of the index writer, on the
embedded Qdrant engine and the real embedding model."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from acl.filter import PermissionFilter
from acl.models import Principal
from core.settings import Settings
from ingest.models import DocumentEvent
from ingest.runtime import build_writer
from ingest.writer import IndexWriter
from retrieval.embedding import SentenceTransformerEmbedder
from retrieval.qdrant_edge import EdgeStore

pytestmark = pytest.mark.integration

HR = Principal(tenant="acme", user_id="h", groups=("hr",))
FINANCE = Principal(tenant="acme", user_id="f", groups=("finance",))
LONG = " ".join(f"Paragraph {i} explains the travel expense policy in detail." for i in range(90))


class CountingEmbedder:
    """The real model, counting what it is asked to embed."""

    def __init__(self, inner: SentenceTransformerEmbedder):
        self._inner = inner
        self.model_name, self.dim, self.max_tokens = inner.model_name, inner.dim, inner.max_tokens
        self.inputs = 0

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.inputs += len(texts)
        return self._inner.embed(texts)

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        return self._inner.token_offsets(text)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EdgeStore]:
    opened = EdgeStore(tmp_path / "qdrant", alias="chunks")
    opened.ensure_collection(dim=384, model="all-MiniLM-L6-v2")
    yield opened
    opened.close()


@pytest.fixture
def counting(embedder: SentenceTransformerEmbedder) -> CountingEmbedder:
    return CountingEmbedder(embedder)


@pytest.fixture
def writer(store: EdgeStore, counting: CountingEmbedder) -> IndexWriter:
    return build_writer(Settings(collection="chunks"), store=store, embedder=counting)


def _event(op: str, version: int, **fields: object) -> DocumentEvent:
    base: dict[str, object] = {"tenant": "acme", "doc_id": "policy", "acl": {"groups": ["hr"]}}
    if op == "upsert":
        base["text"] = "Travel policy: economy class for flights under six hours."
    return DocumentEvent.model_validate({"op": op, "version": version, **base, **fields})


def _visible(store: EdgeStore, principal: Principal, query: list[float]) -> set[str]:
    hits = store.search(query, permission=PermissionFilter.for_principal(principal), limit=20)
    return {hit.doc_id for hit in hits}


async def test_stale_and_replayed_events_are_skipped(writer: IndexWriter, store: EdgeStore) -> None:
    assert (await writer.apply(_event("upsert", 5))).outcome == "applied"
    assert (await writer.apply(_event("upsert", 5, text="replayed"))).outcome == "stale"
    assert (await writer.apply(_event("upsert", 3, text="older"))).outcome == "stale"
    assert store.document_states([("acme", "policy")])[("acme", "policy")].version == 5


async def test_delete_leaves_a_tombstone_so_an_older_upsert_cannot_resurrect(
    writer: IndexWriter, store: EdgeStore
) -> None:
    await writer.apply(_event("upsert", 1))
    await writer.apply(_event("delete", 2))
    assert store.count(doc_id="policy") == 0
    assert (await writer.apply(_event("upsert", 1))).outcome == "stale"
    assert store.count(doc_id="policy") == 0
    await writer.apply(_event("upsert", 3))
    assert store.count(doc_id="policy") == 1


async def test_acl_change_re_permissions_every_chunk_without_embedding(
    writer: IndexWriter, store: EdgeStore, counting: CountingEmbedder
) -> None:
    await writer.apply(_event("upsert", 1, text=LONG))
    chunks = store.count(doc_id="policy")
    assert chunks > 1
    query = counting.embed(["travel expense policy"])[0]
    embedded = counting.inputs
    assert _visible(store, HR, query) == {"policy"}
    await writer.apply(_event("acl", 2, acl={"groups": ["finance"]}))
    assert counting.inputs == embedded, "an ACL change never re-embeds"
    assert _visible(store, HR, query) == set()
    assert _visible(store, FINANCE, query) == {"policy"}
    assert store.count(doc_id="policy") == chunks
    assert {c.version for c in store.chunks(tenant="acme")} == {2}


async def test_unchanged_text_is_not_re_embedded_but_its_payload_is_updated(
    writer: IndexWriter, store: EdgeStore, counting: CountingEmbedder
) -> None:
    await writer.apply(_event("upsert", 1, title="Old title"))
    embedded = counting.inputs
    await writer.apply(_event("upsert", 2, title="New title", acl={"public": True}))
    assert counting.inputs == embedded
    (hit,) = store.search(
        counting.embed(["travel policy"])[0],
        permission=PermissionFilter.for_principal(FINANCE),
        limit=5,
    )
    assert (hit.chunk.title, hit.chunk.version, hit.chunk.acl.public) == (
        "New title",
        2,
        True,
    )


async def test_a_shorter_new_version_leaves_no_orphan_chunks(
    writer: IndexWriter, store: EdgeStore
) -> None:
    await writer.apply(_event("upsert", 1, text=LONG))
    assert store.count(doc_id="policy") > 1
    await writer.apply(_event("upsert", 2, text="Short now."))
    assert store.count(doc_id="policy") == 1


async def test_a_batch_embeds_once_and_applies_in_order(
    writer: IndexWriter, store: EdgeStore, counting: CountingEmbedder
) -> None:
    from opentelemetry import context

    ctx = context.get_current()
    events = [
        _event("upsert", 1, doc_id="a", text="Alpha handbook."),
        _event("upsert", 1, doc_id="b", text="Beta handbook."),
        _event("delete", 2, doc_id="a"),
        _event("upsert", 1, doc_id="b", text="stale replay"),
    ]
    calls_before = counting.inputs
    results = await writer.apply_batch([(event, ctx) for event in events])
    assert [r.outcome for r in results] == ["applied", "applied", "applied", "stale"]
    assert counting.inputs - calls_before == 2
    assert (store.count(doc_id="a"), store.count(doc_id="b")) == (0, 1)
