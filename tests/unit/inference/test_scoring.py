from __future__ import annotations

import random
from dataclasses import replace

import pytest

from inference.scoring import (
    AutoRouter,
    PromptScorer,
    RouteSignals,
    ShareCalibrator,
    multi_step_cues,
    question_type,
)


def _signals(question: str, **changes: object) -> RouteSignals:
    base = RouteSignals(
        question=question,
        prompt_tokens=len(question) // 3,
        turns=1,
        hits=0,
        top_score=None,
        context_tokens=0,
        retrieval=False,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("hi", "chitchat"),
        ("Thank you, that helped!", "chitchat"),
        ("Hey, what is our travel policy?", "lookup"),
        ("What is the per diem for Berlin?", "lookup"),
        ("Can I fly business class to Toronto?", "lookup"),
        ("How do I reset my Okta MFA?", "howto"),
        ("order business cards - how?", "howto"),
        ("What does `git rebase -i` do?", "code"),
        ("Write a Go function that merges overlapping date ranges.", "code"),
        ("The billing service returns 502s since the deploy", "code"),
        ("What is 15% of 2,000?", "math"),
        ("Calculate the break-even point for the new tier", "math"),
        ("Compare the PPO and HDHP plans", "compare"),
        ("What's the difference between PTO and sick leave?", "compare"),
        ("TL;DR of the all-hands notes?", "summarize"),
        ("Draft an email announcing the open enrollment deadline", "creative"),
        ("Attrition rose to 18% last quarter; should we backfill with contractors?", "reasoning"),
        ("Why was my expense claim rejected?", "reasoning"),
    ],
)
def test_question_type_cues(text: str, kind: str) -> None:
    assert question_type(text) == kind


def test_multi_step_cues_count_distinct_cues() -> None:
    assert multi_step_cues("What is the per diem?") == 0
    assert multi_step_cues("Who approves it? And when is the deadline?") == 1
    many = "First list the changes, then for each say if it would affect us, costs, risks"
    assert multi_step_cues(many) >= 3


def test_score_is_a_probability_with_named_contributions() -> None:
    score, features = PromptScorer().score(_signals("What is the per diem?", retrieval=True))
    assert 0.0 < score < 1.0
    assert {"bias", "type", "no_hits", "top_score", "context_tokens"} <= features.keys()


def test_a_strong_source_lowers_a_lookup_and_no_hits_raise_it() -> None:
    scorer = PromptScorer()
    lookup = _signals("What is the per diem for Berlin?")
    off, _ = scorer.score(lookup)
    strong, _ = scorer.score(
        replace(lookup, retrieval=True, hits=5, top_score=0.9, context_tokens=800)
    )
    weak, _ = scorer.score(
        replace(lookup, retrieval=True, hits=2, top_score=0.3, context_tokens=300)
    )
    nothing, _ = scorer.score(replace(lookup, retrieval=True))
    assert strong < off < nothing
    assert strong < weak


def test_hard_kinds_long_conversations_and_long_context_score_higher() -> None:
    scorer = PromptScorer()
    lookup, _ = scorer.score(_signals("What is the per diem for Berlin?"))
    code, _ = scorer.score(_signals("Write a Python function that validates IBANs."))
    chat, _ = scorer.score(_signals("thanks!"))
    assert chat < lookup < code
    short = _signals("Summarize the travel policy.", retrieval=True, hits=3, top_score=0.8)
    long_context = replace(short, context_tokens=4000)
    long_chat = replace(short, turns=6, prompt_tokens=3000)
    assert scorer.score(short)[0] < scorer.score(long_context)[0]
    assert scorer.score(short)[0] < scorer.score(long_chat)[0]


def test_text_only_scorer_ignores_retrieval_signals() -> None:
    scorer = PromptScorer(use_retrieval=False)
    base = _signals("What is the per diem?", retrieval=True)
    strong = replace(base, hits=5, top_score=0.95, context_tokens=900)
    assert scorer.score(base)[0] == scorer.score(strong)[0]
    assert all(scorer.score(strong)[1][k] == 0.0 for k in ("no_hits", "top_score"))


def _share(calibrator: ShareCalibrator, scores: list[float]) -> float:
    return sum(calibrator.decide(score)[0] for score in scores) / len(scores)


@pytest.mark.parametrize("target", [0.1, 0.2, 0.5, 0.8])
def test_calibrator_converges_to_the_target_share(target: float) -> None:
    rng = random.Random(7)
    calibrator = ShareCalibrator(target, window=500)
    _share(calibrator, [rng.betavariate(2, 5) for _ in range(500)])  # warm-up
    assert _share(calibrator, [rng.betavariate(2, 5) for _ in range(5000)]) == pytest.approx(
        target, abs=0.03
    )


def test_calibrator_adapts_when_the_scores_shift() -> None:
    rng = random.Random(11)
    calibrator = ShareCalibrator(0.2, window=300)
    _share(calibrator, [rng.uniform(0.0, 0.5) for _ in range(1000)])
    shifted = [rng.uniform(0.5, 1.0) for _ in range(3000)]
    # Right after the shift every score beats the old threshold; a window later the
    # threshold has moved up and the share is back on target.
    assert _share(calibrator, shifted[:50]) == 1.0
    _share(calibrator, shifted[50:300])
    assert _share(calibrator, shifted[300:]) == pytest.approx(0.2, abs=0.03)
    assert calibrator.threshold() > 0.8


def test_calibrator_uses_the_initial_threshold_until_it_has_enough_scores() -> None:
    calibrator = ShareCalibrator(0.5, window=500, initial_threshold=0.7)
    decisions = [calibrator.decide(0.6) for _ in range(ShareCalibrator.MIN_SCORES)]
    assert decisions == [(False, 0.7)] * ShareCalibrator.MIN_SCORES


def test_calibrator_keeps_the_share_when_scores_tie() -> None:
    calibrator = ShareCalibrator(0.25, window=100)
    assert _share(calibrator, [0.4] * 1000) == pytest.approx(0.25, abs=0.03)


def test_edge_targets_never_and_always_go_large() -> None:
    never, always = ShareCalibrator(0.0), ShareCalibrator(1.0)
    rng = random.Random(3)
    for _ in range(200):
        score = rng.random()
        assert never.decide(score)[0] is False
        assert always.decide(score)[0] is True
    assert never.decide(1.0)[0] is False and always.decide(0.0)[0] is True


@pytest.mark.parametrize(("target", "window"), [(-0.1, 10), (1.5, 10), (0.2, 0)])
def test_calibrator_rejects_bad_settings(target: float, window: int) -> None:
    with pytest.raises(ValueError, match="must"):
        ShareCalibrator(target, window=window)


def test_auto_router_decisions_say_why() -> None:
    router = AutoRouter(0.5, 100, scorer=PromptScorer(), initial_threshold=0.5)
    hard = router.decide(_signals("Write a Python script that " + "parses payroll, " * 20))
    easy = router.decide(_signals("thanks!"))
    assert (hard.tier, hard.reason) == ("large", "auto:score>=threshold")
    assert (easy.tier, easy.reason) == ("small", "auto:score<threshold")
    assert hard.question_type == "code" and easy.question_type == "chitchat"
    attributes = hard.span_attributes()
    assert attributes["headwater.route.question_type"] == "code"
    assert attributes["headwater.route.threshold"] == 0.5
    assert "headwater.route.feature.top_score" in attributes
    assert hard.header_value().startswith("large; score=0.")
