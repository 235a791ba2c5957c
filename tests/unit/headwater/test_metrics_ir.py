"""The ranking metrics against values worked out by hand (BEIR / trec_eval definitions)."""

from __future__ import annotations

import math

import pytest

from headwater.metrics_ir import (
    documents_by_best_chunk,
    mrr_at_k,
    ndcg_at_k,
    percentile,
    recall_at_k,
)

# 1 / log2(3) and 1 / log2(5): the discounts of ranks 2 and 4.
D2, D4 = 0.6309297536, 0.4306765581


def test_ndcg_of_two_relevant_documents_at_ranks_two_and_four() -> None:
    # DCG = D2 + D4 = 1.0616063; ideal DCG = 1 + D2 = 1.6309298; ratio 0.6509203
    assert ndcg_at_k(["a", "b", "c", "d"], {"b": 1, "d": 1}) == pytest.approx(0.6509203, abs=1e-6)


def test_ndcg_is_one_for_the_ideal_order_and_uses_linear_graded_gain() -> None:
    assert ndcg_at_k(["b", "d", "a"], {"b": 1, "d": 1}) == pytest.approx(1.0)
    # DCG = 1 + 2 * D2 = 2.2618595; ideal = 2 + D2 = 2.6309298; ratio 0.8597194
    assert ndcg_at_k(["x", "y"], {"x": 1, "y": 2}) == pytest.approx(0.8597194, abs=1e-6)


def test_ndcg_counts_relevant_documents_that_were_not_retrieved_in_the_ideal() -> None:
    # DCG = 1; ideal = 1 + D2 = 1.6309298; ratio 0.6131472
    assert ndcg_at_k(["a"], {"a": 1, "z": 1}) == pytest.approx(0.6131472, abs=1e-6)


def test_ndcg_cuts_at_k_and_ignores_zero_judgements() -> None:
    assert ndcg_at_k(["a", "b"], {"b": 1}, k=1) == 0.0
    assert ndcg_at_k(["a", "b"], {"a": 0, "b": 1}) == pytest.approx(D2)
    assert ndcg_at_k(["a"], {}) == 0.0


def test_recall_at_100_is_the_share_of_relevant_documents_in_the_first_100() -> None:
    ranking = [f"d{i}" for i in range(1, 151)]
    assert recall_at_k(ranking, {"d50": 1, "d120": 1}) == 0.5
    assert recall_at_k(ranking, {"d50": 1, "d100": 1, "z": 0}) == 1.0
    assert recall_at_k(ranking, {"z": 0}) == 0.0


def test_mrr_is_one_over_the_first_relevant_rank_within_k() -> None:
    assert mrr_at_k(["a", "b", "c", "d"], {"c": 1, "d": 1}) == pytest.approx(1 / 3)
    ranking = [f"d{i}" for i in range(1, 20)]
    assert mrr_at_k(ranking, {"d11": 1}) == 0.0
    assert mrr_at_k(ranking, {"d11": 1}, k=11) == pytest.approx(1 / 11)


def test_k_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="k must be"):
        ndcg_at_k(["a"], {"a": 1}, k=0)


def test_a_document_ranks_at_its_best_chunk() -> None:
    assert documents_by_best_chunk(["d1", "d2", "d1", "d3", "d2"]) == ["d1", "d2", "d3"]


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([4.0, 1.0, 3.0, 2.0], 0.5) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.95) == pytest.approx(3.85)
    assert percentile([7.0], 0.95) == 7.0
    with pytest.raises(ValueError):
        percentile([], 0.5)
    assert math.isclose(percentile([1.0, 2.0], 1.0), 2.0)
