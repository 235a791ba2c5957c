"""A quality floor for the shipped router, on held-out prompts with the real MiniLM.

The prompts are a fixed part of the router's committed MMLU test split
(``tests/data/router/mmlu_test_split.jsonl.gz``; see PROVENANCE.md there): those whose
split bucket is below ``SUBSET_BUCKETS`` (FLOOR_PROMPTS of them), so the test embeds
about a thousand prompts, not 2,713. The router was never trained or tuned on them.
The floors sit below what the shipped router measures on this subset by a margin taken
from the bootstrap interval (see ``FLOORS``): a regression that moves a figure past
the edge of its own interval fails; noise in a retrain does not.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference.router_data import load_outcomes, prompt_bucket
from inference.router_metrics import metrics_of
from inference.router_model import shipped_model
from inference.scoring import LearnedScorer, RouteSignals
from retrieval.embedding import SentenceTransformerEmbedder

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[1] / "data" / "router" / "mmlu_test_split.jsonl.gz"
SUBSET_BUCKETS = 7
FLOOR_PROMPTS = 1000
# Router 2026-12-03.1 on this subset measured APGR 0.675 [0.602, 0.775], CPT(50%) 0.271
# [0.179, 0.400], share for 95% of strong 0.431 [0.220, 0.551] (95% bootstrap intervals,
# 1000 resamples; BENCHMARKS.md, "Router (issue 18)"). Each floor is the interval's bound
# on the losing side, loosened by 0.02. A random router (APGR 0.5, CPT(50%) 0.5, share
# 0.649 on this subset) fails all three.
FLOORS = {"apgr": 0.58, "cpt50": 0.42, "strong_share_at_95": 0.57}


def test_the_shipped_router_beats_its_floor_on_held_out_prompts(
    embedder: SentenceTransformerEmbedder,
) -> None:
    everything = load_outcomes([DATA])
    data = everything.subset([prompt_bucket(p) < SUBSET_BUCKETS for p in everything.prompts])
    assert len(data) == FLOOR_PROMPTS
    vectors = np.array(embedder.embed(data.prompts), dtype=np.float64)
    figures = metrics_of(shipped_model().logits(vectors, data.prompts), data.strong, data.weak)
    assert figures.apgr >= FLOORS["apgr"]
    assert figures.cpt50 <= FLOORS["cpt50"]
    assert figures.strong_share_at_95 <= FLOORS["strong_share_at_95"]


def test_the_request_path_scores_as_the_batch_does(embedder: SentenceTransformerEmbedder) -> None:
    """The router scores one request's embedding (computed by retrieval) as it scores the
    batch above: the learned part of a request's score is the model's logit."""
    question = load_outcomes([DATA]).prompts[0]
    vector = embedder.embed([question])[0]
    signals = RouteSignals.from_messages([("user", question)], embedding=vector)
    parts = LearnedScorer().assess(signals)[1]
    batch = shipped_model().logits(np.array([vector]), [question])[0]
    assert parts["prompt_model"] == pytest.approx(batch)
