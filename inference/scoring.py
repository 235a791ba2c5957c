"""The scoring router for ``model: auto``: a learned score of the question, a documented
prior from retrieval and the conversation on top, and a threshold calibrated online so
that a configured share of requests goes large.

The score (``LearnedScorer``, the default) is a log-odds sum:

- ``prompt_model``: the learned router (``inference.router_model``), fitted on real
  per-prompt outcomes of a strong and a weak model (RouteLLM's GPT-4 / Mixtral grades on
  MMLU, ``headwater router train``), over the question's MiniLM embedding, which
  retrieval already computed (``RouteSignals.embedding``), and cheap text features;
- ``no_hits``, ``top_score``, ``context_tokens``: the retrieval prior
  (``inference.cue_scorer.retrieval_prior``: hits after the ACL filter, best score,
  context size), hand-set until labelled RAG outcomes exist to fit it;
- ``turns``, ``history_tokens``: the conversation prior (a single-prompt model cannot
  see earlier turns).

The threshold is the calibrator's (``inference.calibration.ShareCalibrator``). A
decision costs tens of microseconds given the embedding (``bench/router_latency.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from inference.calibration import ShareCalibrator as ShareCalibrator  # re-exported
from inference.cue_scorer import PromptScorer as PromptScorer  # re-exported
from inference.cue_scorer import conversation_prior, retrieval_prior
from inference.cues import multi_step_cues as multi_step_cues  # re-exported
from inference.cues import question_type
from inference.route_signals import RouteSignals as RouteSignals  # re-exported
from inference.route_signals import Tier as Tier  # re-exported
from inference.router_model import RouterModel, shipped_model

__all__ = [
    "AutoRouter",
    "LearnedScorer",
    "PromptScorer",
    "RouteDecision",
    "RouteSignals",
    "Scorer",
    "ShareCalibrator",
    "Tier",
    "multi_step_cues",
    "question_type",
]


class Scorer(Protocol):
    """Scores a request: a probability-like score, named log-odds parts, question type."""

    def assess(self, s: RouteSignals) -> tuple[float, dict[str, float], str]: ...


class LearnedScorer:
    """The learned router's log-odds plus the retrieval and conversation priors.

    ``model`` defaults to the shipped artifact (``inference/data/router.json``). With
    ``use_priors=False`` only the learned part counts (what ``headwater router eval``
    measures on benchmark prompts, which carry no retrieval signals).
    """

    def __init__(self, model: RouterModel | None = None, *, use_priors: bool = True) -> None:
        self.model = model or shipped_model()
        self.use_priors = use_priors

    def score(self, s: RouteSignals) -> tuple[float, dict[str, float]]:
        """A probability-like score in [0, 1] and each part's log-odds contribution."""
        score, parts, _ = self.assess(s)
        return score, parts

    def assess(self, s: RouteSignals) -> tuple[float, dict[str, float], str]:
        """``score`` plus the question type the retrieval prior weighted by (for traces)."""
        kind = question_type(s.question)
        parts = {
            "prompt_model": self.model.logit(s.embedding, s.question),
            "embedding_missing": 0.0 if s.embedding is not None else 1.0,
        }
        if self.use_priors:
            parts.update(retrieval_prior(s, kind))
            parts.update(conversation_prior(s))
        logit = sum(v for k, v in parts.items() if k != "embedding_missing")
        return _sigmoid(logit), parts, kind


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@dataclass(frozen=True)
class RouteDecision:
    """An ``auto`` routing decision and what it was based on."""

    tier: Tier
    score: float
    threshold: float
    reason: str
    features: dict[str, float]
    question_type: str = ""

    def span_attributes(self) -> dict[str, str | float]:
        """Attributes for the route span (``headwater.route.*``); no prompt text."""
        attributes: dict[str, str | float] = {
            "headwater.route.score": round(self.score, 4),
            "headwater.route.threshold": round(self.threshold, 4),
            "headwater.route.question_type": self.question_type,
        }
        for name, value in self.features.items():
            attributes[f"headwater.route.feature.{name}"] = round(value, 4)
        return attributes

    def header_value(self) -> str:
        """A compact value for a response header, e.g. ``large; score=0.71; threshold=0.64``."""
        return f"{self.tier}; score={self.score:.3f}; threshold={self.threshold:.3f}"


class AutoRouter:
    """Scores a request and compares the score with the calibrated threshold.

    ``scorer`` defaults to :class:`LearnedScorer` with the shipped model. The
    calibrator's state (the last ``window`` scores) lives in this object: one per API
    replica and event loop, each calibrating on its own traffic (see
    ``inference.calibration``).
    """

    def __init__(
        self,
        target_large_share: float,
        window: int = 500,
        *,
        scorer: Scorer | None = None,
        initial_threshold: float = 0.5,
    ) -> None:
        self.scorer: Scorer = scorer or LearnedScorer()
        self.calibrator = ShareCalibrator(
            target_large_share, window=window, initial_threshold=initial_threshold
        )

    def decide(self, s: RouteSignals) -> RouteDecision:
        """The tier for ``s``, with the score, threshold and parts it was based on."""
        score, features, kind = self.scorer.assess(s)
        large, threshold = self.calibrator.decide(score)
        if large:
            return RouteDecision("large", score, threshold, "auto:score>=threshold", features, kind)
        # A score equal to the threshold may go small to keep the share (see the calibrator).
        reason = "auto:tie-small" if score == threshold else "auto:score<threshold"
        return RouteDecision("small", score, threshold, reason, features, kind)
