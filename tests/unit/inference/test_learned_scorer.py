"""The learned router's policy on the request path: the learned part, the retrieval prior
on top (no readable hits move a borderline question to the large tier, a strong source
to the small one), and the decision as it is exposed (span attributes, header)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from inference.cue_scorer import W_NO_HITS
from inference.router_model import shipped_model
from inference.scoring import AutoRouter, LearnedScorer, RouteDecision, RouteSignals

QUESTION = "What is the per diem for Berlin?"  # a lookup: grounding need 1.0


def _embedding(seed: int) -> list[float]:
    vector = np.random.default_rng(seed).normal(0, 1, 384)
    return (vector / np.linalg.norm(vector)).tolist()


def _with_source(seed: int, top_score: float = 0.6) -> RouteSignals:
    return RouteSignals.from_messages(
        [("user", QUESTION)],
        hits=3,
        top_score=top_score,
        context_tokens=600,
        retrieval=True,
        embedding=_embedding(seed),
    )


def _warm_router(target: float = 0.5) -> tuple[AutoRouter, list[RouteSignals]]:
    router = AutoRouter(target, 200)
    population = [_with_source(seed) for seed in range(200)]
    for s in population:
        router.decide(s)
    return router, population


def _borderline(router: AutoRouter, population: list[RouteSignals], *, below: bool) -> RouteSignals:
    threshold = router.calibrator.threshold()
    scorer = router.scorer
    scored = [(scorer.assess(s)[0], s) for s in population]
    side = [(abs(score - threshold), s) for score, s in scored if (score < threshold) == below]
    return min(side, key=lambda pair: pair[0])[1]


def test_no_readable_hits_move_a_borderline_question_to_large() -> None:
    router, population = _warm_router()
    borderline = _borderline(router, population, below=True)
    assert router.decide(borderline).tier == "small"
    nothing = router.decide(replace(borderline, hits=0, top_score=None))
    assert nothing.tier == "large"
    assert nothing.features["no_hits"] == pytest.approx(W_NO_HITS)


def test_a_strong_source_moves_a_borderline_question_to_small() -> None:
    router, population = _warm_router()
    borderline = _borderline(router, population, below=False)
    assert router.decide(borderline).tier == "large"
    assert router.decide(replace(borderline, top_score=0.95)).tier == "small"


def test_retrieval_off_leaves_only_the_learned_part_and_the_conversation() -> None:
    scorer = LearnedScorer()
    off = replace(_with_source(1), retrieval=False)
    score, parts, _ = scorer.assess(off)
    assert parts["no_hits"] == parts["top_score"] == parts["context_tokens"] == 0.0
    learned = shipped_model().logit(off.embedding, QUESTION)
    assert parts["prompt_model"] == pytest.approx(learned)
    assert score == pytest.approx(1 / (1 + np.exp(-learned)))


def test_the_embedding_decides_the_learned_part_and_its_absence_is_marked() -> None:
    scorer = LearnedScorer()
    first, second = scorer.assess(_with_source(1))[1], scorer.assess(_with_source(2))[1]
    assert first["prompt_model"] != second["prompt_model"]
    missing = scorer.assess(replace(_with_source(1), embedding=None))[1]
    assert (first["embedding_missing"], missing["embedding_missing"]) == (0.0, 1.0)


def test_earlier_turns_raise_the_score() -> None:
    scorer = LearnedScorer()
    one = _with_source(3)
    later = replace(one, turns=5, prompt_tokens=one.prompt_tokens + 2000)
    assert scorer.assess(later)[0] > scorer.assess(one)[0]


def test_the_decision_is_exposed_as_before() -> None:
    router, _ = _warm_router()
    decision = router.decide(_with_source(7))
    assert isinstance(decision, RouteDecision) and decision.reason.startswith("auto:")
    attributes = decision.span_attributes()
    assert "headwater.route.feature.prompt_model" in attributes
    assert "headwater.route.feature.no_hits" in attributes
    assert decision.header_value().startswith(f"{decision.tier}; score=")
