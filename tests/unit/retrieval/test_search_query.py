"""The search request as data, and how the retriever builds it from its policy."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import cast

import pytest

from acl.filter import PermissionFilter
from acl.models import Principal
from core.settings import Settings
from retrieval.query import SearchPolicy, SearchQuery, as_search_query, cosine
from retrieval.schema import Hit
from retrieval.service import Retriever
from retrieval.sparse import LexicalEncoder
from retrieval.store import VectorStore

PERMISSION = PermissionFilter.for_principal(Principal(tenant="acme", user_id="u"))


class FakeEmbedder:
    model_name, dim, max_tokens = "fake", 2, 16

    def __init__(self) -> None:
        self.calls = 0

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls += 1
        return [[1.0, 0.0] for _ in texts]

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        return []


class RecordingStore:
    """Records the queries it is asked; finds nothing."""

    lexical = True

    def __init__(self) -> None:
        self.queries: list[SearchQuery] = []

    def search(
        self, query: SearchQuery | Sequence[float], *, permission: PermissionFilter, limit: int
    ) -> list[Hit]:
        assert permission is PERMISSION
        self.queries.append(as_search_query(query))
        return []


def test_policy_defaults_are_the_settings_defaults() -> None:
    assert SearchPolicy.from_settings(Settings(_env_file=None)) == SearchPolicy()


def test_a_lexical_search_needs_terms_and_a_bare_vector_is_dense() -> None:
    with pytest.raises(ValueError, match="lexical terms"):
        SearchQuery([1.0], mode="hybrid")
    with pytest.raises(ValueError, match="mmr_diversity"):
        SearchQuery([1.0], mmr_diversity=1.5)
    assert as_search_query([1.0, 0.0]) == SearchQuery([1.0, 0.0])
    assert SearchQuery([1.0]).plain_dense and not SearchQuery([1.0], rerank="mmr").plain_dense


def test_pool_depth_and_the_dense_fallback() -> None:
    terms = LexicalEncoder().encode_query("salary bands")
    query = SearchQuery([1.0], lexical=terms, mode="hybrid", rerank="mmr", candidates=20)
    assert (query.pool(5), query.pool(40)) == (20, 40)
    fallback = query.dense_only()
    assert (fallback.mode, fallback.lexical, fallback.rerank) == ("dense", None, "mmr")


def test_cosine_normalises_both_sides() -> None:
    assert cosine([2.0, 0.0], [1.0, 0.0]) == pytest.approx(1.0)
    assert cosine([0.0, 0.0], [1.0, 0.0]) == 0.0


def test_lexical_terms_are_stemmed_and_stopwords_dropped() -> None:
    encoder = LexicalEncoder()
    assert encoder.encode_query("Running the tests") == encoder.encode_query("tests run")
    document = encoder.encode_document("salary salary band")
    assert len(document.indices) == 2 and max(document.values) > min(document.values)


def test_the_retriever_searches_as_its_policy_says_unless_told_otherwise() -> None:
    store, embedder = RecordingStore(), FakeEmbedder()
    policy = SearchPolicy(mode="hybrid", fusion="dbsf", rerank="mmr", candidates=7)
    retriever = Retriever(
        store=cast(VectorStore, store), embedder=embedder, collection="c", policy=policy
    )

    asyncio.run(retriever.search("salary bands", permission=PERMISSION, top_k=3))
    asyncio.run(retriever.search("salary bands", permission=PERMISSION, top_k=3, mode="dense"))
    hybrid, dense = store.queries
    assert (hybrid.mode, hybrid.fusion, hybrid.rerank, hybrid.candidates) == (
        "hybrid",
        "dbsf",
        "mmr",
        7,
    )
    assert hybrid.lexical is not None and dense.lexical is None and dense.mode == "dense"


def test_the_question_is_embedded_once_and_handed_back() -> None:
    store, embedder = RecordingStore(), FakeEmbedder()
    retriever = Retriever(store=cast(VectorStore, store), embedder=embedder, collection="c")
    result = asyncio.run(retriever.retrieve("q", permission=PERMISSION, top_k=2))
    assert result.query_vector == [1.0, 0.0] and embedder.calls == 1
    again = asyncio.run(
        retriever.retrieve(
            "q", permission=PERMISSION, top_k=2, mode="sparse", query_vector=result.query_vector
        )
    )
    assert embedder.calls == 1 and again.query_vector == result.query_vector
    assert store.queries[-1].mode == "sparse"
