"""What a search asks the store for: mode, fusion and reranking, as plain typed data.

- ``dense``: nearest neighbours of the question's embedding (the fast path).
- ``sparse``: BM25 over the ``lexical`` vector, IDF applied by the engine.
- ``hybrid``: a dense and a sparse prefetch, each under the caller's permission filter,
  fused in the same Query API call by reciprocal rank (``rrf``) or distribution-based
  score fusion (``dbsf``).

Reranking: ``mmr`` (maximal marginal relevance, run by the engine) reorders the candidate
pool by dense relevance to the question and dissimilarity to what is already chosen.
A cross-encoder would be the stronger reranker, but none can be had offline here: no
model hub is reachable and no package on PyPI that this project may use ships
cross-encoder weights, so none is wired in rather than a fake one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from core.settings import Settings
from retrieval.schema import VECTOR_NAME, Hit, SparseTerms

SearchMode = Literal["dense", "sparse", "hybrid"]
FusionMethod = Literal["rrf", "dbsf"]
RerankMethod = Literal["none", "mmr"]

# Reciprocal-rank fusion's k (Cormack et al. 2009): 1 / (k + rank) per prefetch.
RRF_K = 60


@dataclass(frozen=True)
class SearchPolicy:
    """How a retriever searches unless a call says otherwise (``HEADWATER_RETRIEVAL_*``).

    Defaults by measurement on SciFact's 809 training queries (chunked as the writer does,
    nDCG@10 over documents): dense 0.689, sparse 0.702, hybrid RRF 0.727, hybrid DBSF
    0.735; MMR (diversity 0.3) on hybrid 0.661, so it stays off.
    """

    mode: SearchMode = "hybrid"
    fusion: FusionMethod = "dbsf"
    rerank: RerankMethod = "none"
    mmr_diversity: float = 0.3
    candidates: int = 50

    @classmethod
    def from_settings(cls, settings: Settings) -> SearchPolicy:
        return cls(
            mode=settings.retrieval_mode,
            fusion=settings.retrieval_fusion,
            rerank=settings.retrieval_rerank,
            mmr_diversity=settings.retrieval_mmr_diversity,
            candidates=settings.retrieval_candidates,
        )


@dataclass(frozen=True)
class SearchQuery:
    """One search: the question's dense embedding, its lexical terms, and how to rank.

    ``candidates`` is each prefetch's depth (and MMR's pool), never less than the limit.
    """

    dense: Sequence[float]
    lexical: SparseTerms | None = None
    mode: SearchMode = "dense"
    fusion: FusionMethod = "dbsf"
    rerank: RerankMethod = "none"
    mmr_diversity: float = 0.3
    candidates: int = 50

    def __post_init__(self) -> None:
        if self.mode != "dense" and self.lexical is None:
            raise ValueError(f"a {self.mode} search needs the question's lexical terms")
        if not 0.0 <= self.mmr_diversity <= 1.0:
            raise ValueError("mmr_diversity must be within [0, 1]")

    def pool(self, limit: int) -> int:
        """Depth of each prefetch (and of MMR's candidate pool)."""
        return max(limit, self.candidates)

    @property
    def plain_dense(self) -> bool:
        """Whether the engine's score is already the cosine similarity (no rescoring)."""
        return self.mode == "dense" and self.rerank == "none"

    def dense_only(self) -> SearchQuery:
        """The same search on the dense vector alone (a collection with no lexical one)."""
        return SearchQuery(
            self.dense,
            mode="dense",
            rerank=self.rerank,
            mmr_diversity=self.mmr_diversity,
            candidates=self.candidates,
        )


class ScoredPoint(Protocol):
    """What both engines answer a query with."""

    @property
    def id(self) -> Any: ...
    @property
    def score(self) -> float: ...
    @property
    def payload(self) -> dict[str, Any] | None: ...
    @property
    def vector(self) -> Any: ...


def hits_of(query: SearchQuery, points: Iterable[ScoredPoint]) -> list[Hit]:
    """Hits in the engine's order, each scored by its cosine similarity to the question
    (outside plain dense search, from the dense vector the engine returned)."""
    if query.plain_dense:
        return [Hit.of(p.id, p.score, p.payload) for p in points]
    return [
        Hit.of(p.id, _similarity(query.dense, p.vector), p.payload, rank_score=p.score)
        for p in points
    ]


def _similarity(question: Sequence[float], vectors: object) -> float:
    if not isinstance(vectors, Mapping) or VECTOR_NAME not in vectors:
        return 0.0
    return cosine(question, vectors[VECTOR_NAME])


def as_search_query(query: SearchQuery | Sequence[float]) -> SearchQuery:
    """A bare vector is a dense search (the store's original signature)."""
    return query if isinstance(query, SearchQuery) else SearchQuery(query)


def cosine(query: Sequence[float], vector: Sequence[float]) -> float:
    """Cosine similarity (the engine stores cosine vectors normalised; the query may not be)."""
    q = np.asarray(query, dtype=np.float32)
    v = np.asarray(vector, dtype=np.float32)
    denominator = float(np.linalg.norm(q) * np.linalg.norm(v))
    return float(q @ v) / denominator if denominator else 0.0


@dataclass(frozen=True)
class SearchResult:
    """What a retrieval found, with the question's embedding it used (reusable, e.g. by
    the router, without embedding the question twice)."""

    hits: list[Hit]
    query_vector: list[float] = field(default_factory=list)
