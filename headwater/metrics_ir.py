"""Ranking metrics over documents, as BEIR reports them (pytrec_eval's definitions).

Every function takes one query's ranking (document ids, best first, no repeats) and its
judgements (document id to graded relevance; 0 or absent means not relevant):

- ``ndcg_at_k``: gain ``rel`` discounted by ``log2(rank + 1)``, divided by the same sum
  over the ideal ordering of the judged documents (trec_eval's ``ndcg_cut``: linear gain);
- ``recall_at_k``: the share of the relevant documents found in the first ``k``;
- ``mrr_at_k``: one over the rank of the first relevant document, 0 if none is in the
  first ``k``.

A query with no relevant document scores 0 on each (BEIR drops such queries before
scoring; :func:`headwater.beir.load_beir` keeps only queries with one).

:func:`documents_by_best_chunk` turns a chunk ranking into a document ranking: each
document takes the rank of its best chunk (max-pooling), the way passage retrieval is
scored against document-level judgements.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

Judgements = Mapping[str, int]


def ndcg_at_k(ranking: Sequence[str], judgements: Judgements, k: int = 10) -> float:
    """Normalised discounted cumulative gain of the first ``k`` documents."""
    _check_k(k)
    gains = [max(judgements.get(doc_id, 0), 0) for doc_id in ranking[:k]]
    ideal = sorted((rel for rel in judgements.values() if rel > 0), reverse=True)[:k]
    best = _dcg(ideal)
    return _dcg(gains) / best if best else 0.0


def recall_at_k(ranking: Sequence[str], judgements: Judgements, k: int = 100) -> float:
    """Relevant documents among the first ``k``, over all relevant documents."""
    _check_k(k)
    relevant = {doc_id for doc_id, rel in judgements.items() if rel > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranking[:k])) / len(relevant)


def mrr_at_k(ranking: Sequence[str], judgements: Judgements, k: int = 10) -> float:
    """Reciprocal rank of the first relevant document within the first ``k``."""
    _check_k(k)
    for rank, doc_id in enumerate(ranking[:k], start=1):
        if judgements.get(doc_id, 0) > 0:
            return 1.0 / rank
    return 0.0


def documents_by_best_chunk(chunk_doc_ids: Iterable[str]) -> list[str]:
    """Document ids in the order of their first (best) chunk, each once."""
    return list(dict.fromkeys(chunk_doc_ids))


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0..1), interpolating linearly between ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile {q} is outside 0..1")
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _dcg(gains: Sequence[int]) -> float:
    return sum(gain / math.log2(rank + 1) for rank, gain in enumerate(gains, start=1))


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
