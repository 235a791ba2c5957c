"""The scoring router for ``model: auto``: a score over prompt and retrieval signals,
and a threshold calibrated online so that a configured share of requests goes large.

Routers in the literature (RouteLLM and its kin) score the prompt text alone. A gateway
in front of retrieval knows more: whether the caller's permitted documents held
anything relevant (hits after ACL filtering, the best score) and how much context the
answer must digest. A factual lookup with a strongly matching source is what a small
model answers well; a question with nothing to ground on, or one that needs reasoning,
code, arithmetic or comparison across long context, is where a large model earns its cost.

Everything here is pure Python with no model calls: a decision costs microseconds
against the gateway's 2 ms overhead budget. The question-type cues the scorer reads
are in ``inference.cues``.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass
from typing import Literal

from inference.cues import _is_simple_ask, _multi_step_cues, _question_type, _Text
from inference.cues import multi_step_cues as multi_step_cues  # re-exported
from inference.cues import question_type as question_type  # re-exported

Tier = Literal["small", "large"]
_CHARS_PER_TOKEN = 3  # the estimate api/prompt.py budgets the prompt with


@dataclass(frozen=True)
class RouteSignals:
    """What the router knows about a request when it must choose a tier."""

    question: str  # the last user message
    prompt_tokens: int  # estimate of the whole conversation
    turns: int  # number of user messages
    hits: int  # retrieval hits after ACL filtering (0 when retrieval is off or found nothing)
    top_score: float | None  # best retrieval score (cosine, 0..1) or None
    context_tokens: int  # tokens of retrieved context put in the prompt
    retrieval: bool  # whether retrieval ran

    @classmethod
    def from_messages(
        cls,
        messages: list[tuple[str, str]],
        *,
        hits: int = 0,
        top_score: float | None = None,
        context_tokens: int = 0,
        retrieval: bool = False,
    ) -> RouteSignals:
        """Signals of a conversation given as ``(role, text)`` pairs, oldest first."""
        users = [text for role, text in messages if role == "user"]
        return cls(
            question=users[-1] if users else "",
            prompt_tokens=sum(len(text) for _, text in messages) // _CHARS_PER_TOKEN,
            turns=len(users),
            hits=hits,
            top_score=top_score,
            context_tokens=context_tokens,
            retrieval=retrieval,
        )


# The scorer is a hand-set logistic model: score = sigmoid(sum of contributions), each
# contribution a weight times a bounded feature, in log-odds (+1 about triples the odds
# of "needs large"). The weights encode the routing intuition above; they were adjusted
# by hand on a development set drawn with another seed (make_router_eval.py --seed 1),
# never on bench/data/router_eval.jsonl, which reports them. They are not fitted: the
# labelled set is synthetic, and a fit would only learn its generator.
BIAS = -1.1
TYPE_WEIGHTS: dict[str, float] = {
    "chitchat": -2.5,  # greetings, thanks: any model will do
    "lookup": -0.9,  # one fact, usually in the sources
    "howto": -0.4,  # steps from a document
    "summarize": 0.1,  # depends mostly on how much context there is
    "creative": 0.1,  # emails and announcements: small models write them well
    "math": 0.9,  # arithmetic slips are a known small-model weakness
    "reasoning": 1.1,  # why / should we / what if
    "compare": 1.1,  # weigh several sources against each other
    "code": 1.2,  # writing and debugging code
}
# How much a type's answer depends on finding the caller's documents: a lookup with no
# source is a likely hallucination; a poem or a greeting does not care.
GROUNDING_NEED: dict[str, float] = {
    "chitchat": 0.0,
    "creative": 0.2,
    "code": 0.3,
    "math": 0.3,
    "reasoning": 0.6,
    "summarize": 0.8,
    "compare": 0.8,
    "howto": 1.0,
    "lookup": 1.0,
}
W_QUESTION_LENGTH = 0.35  # per 32 question tokens, up to 4: long asks are detailed asks
W_SIMPLE_ASK = -0.6  # a short what/who/when/where question
W_MULTI_STEP = 0.6  # per multi-step cue, up to 3
W_TURNS = 0.15  # per earlier user turn, up to 6: follow-ups lean on the conversation
W_PROMPT_TOKENS = 0.25  # per 1,000 conversation tokens, up to 4: long context
W_NO_HITS = 2.0  # retrieval ran and found nothing the caller may read (times grounding need)
W_TOP_SCORE = -7.0  # per unit of best score above 0.55 (times grounding need)
TOP_SCORE_PIVOT = 0.55  # a cosine at which a source about as often answers as not
W_CONTEXT_TOKENS = 0.3  # per 1,000 context tokens, up to 4: more to read and reconcile
RETRIEVAL_FEATURES: tuple[str, ...] = ("no_hits", "top_score", "context_tokens")


class PromptScorer:
    """Scores how likely a request needs the large model, from prompt and retrieval cues.

    With ``use_retrieval=False`` the retrieval features contribute nothing: a
    prompt-text-only scorer, the baseline that shows what retrieval signals add.
    """

    def __init__(self, *, use_retrieval: bool = True) -> None:
        self.use_retrieval = use_retrieval

    def score(self, s: RouteSignals) -> tuple[float, dict[str, float]]:
        """A probability-like score in [0, 1] and each feature's log-odds contribution."""
        score, features, _ = self.assess(s)
        return score, features

    def assess(self, s: RouteSignals) -> tuple[float, dict[str, float], str]:
        """``score`` plus the question type it saw (for traces)."""
        text = _Text(s.question)
        kind = _question_type(text)
        question_tokens = len(s.question) / _CHARS_PER_TOKEN
        parts = {
            "bias": BIAS,
            "type": TYPE_WEIGHTS[kind],
            "question_length": W_QUESTION_LENGTH * min(question_tokens / 32, 4.0),
            "simple_ask": W_SIMPLE_ASK * _is_simple_ask(text),
            "multi_step": W_MULTI_STEP * min(_multi_step_cues(text), 3),
            "turns": W_TURNS * min(max(s.turns - 1, 0), 6),
            "prompt_tokens": W_PROMPT_TOKENS * min(s.prompt_tokens / 1000, 4.0),
        }
        parts.update(self._retrieval_parts(s, GROUNDING_NEED[kind]))
        return 1.0 / (1.0 + math.exp(-sum(parts.values()))), parts, kind

    def _retrieval_parts(self, s: RouteSignals, need: float) -> dict[str, float]:
        if not (self.use_retrieval and s.retrieval):
            # Retrieval off (by request or by this baseline) says nothing either way.
            return dict.fromkeys(RETRIEVAL_FEATURES, 0.0)
        context = W_CONTEXT_TOKENS * min(s.context_tokens / 1000, 4.0)
        if s.hits > 0 and s.top_score is not None:
            top = W_TOP_SCORE * need * (s.top_score - TOP_SCORE_PIVOT)
            return {"no_hits": 0.0, "top_score": top, "context_tokens": context}
        return {"no_hits": W_NO_HITS * need, "top_score": 0.0, "context_tokens": context}


class ShareCalibrator:
    """Chooses the threshold so that about ``target_large_share`` of scores go large.

    The threshold is the ``1 - target`` quantile of the last ``window`` scores, so the
    share follows the target whatever the score distribution is, and follows it again
    after the traffic changes. Not thread-safe: one calibrator per event loop (each
    API replica calibrates on its own traffic, which is what the share is about).
    """

    MIN_SCORES = 20  # below this many scores the quantile is noise: use the initial threshold

    def __init__(
        self, target_large_share: float, *, window: int = 500, initial_threshold: float = 0.5
    ) -> None:
        if not 0.0 <= target_large_share <= 1.0:
            raise ValueError("target_large_share must be in [0, 1]")
        if window < 1:
            raise ValueError("window must be at least 1")
        self.target_large_share = target_large_share
        self.window = window
        self.initial_threshold = initial_threshold
        self._recent: deque[float] = deque()
        self._sorted: list[float] = []
        # Scores equal to the threshold go large in the proportion that keeps the share
        # on target; the credit spreads those picks evenly (no randomness needed).
        self._tie_credit = 0.0

    @property
    def warming_up(self) -> bool:
        """Whether too few scores are recorded yet for a quantile."""
        return len(self._sorted) < min(self.MIN_SCORES, self.window)

    def threshold(self) -> float:
        """The threshold the next decision will use (1 for target 0, 0 for target 1)."""
        target = self.target_large_share
        if target <= 0.0:
            return 1.0
        if target >= 1.0:
            return 0.0
        if self.warming_up:
            return self.initial_threshold
        n = len(self._sorted)
        return self._sorted[min(n - 1, int((1.0 - target) * n))]

    def decide(self, score: float) -> tuple[bool, float]:
        """Whether ``score`` goes large, and the threshold used; then records the score.

        Target 0 never goes large and target 1 always does, whatever the score.
        """
        threshold = self.threshold()
        if self.target_large_share <= 0.0:
            large = False
        elif self.target_large_share >= 1.0:
            large = True
        elif score != threshold or self.warming_up:
            large = score >= threshold
        else:
            large = self._tie_goes_large(threshold)
        self._record(score)
        return large, threshold

    def _tie_goes_large(self, threshold: float) -> bool:
        n = len(self._sorted)
        below = bisect.bisect_left(self._sorted, threshold)
        ties = bisect.bisect_right(self._sorted, threshold) - below
        above = n - below - ties
        self._tie_credit += min(1.0, max(0.0, (self.target_large_share * n - above) / ties))
        if self._tie_credit >= 1.0:
            self._tie_credit -= 1.0
            return True
        return False

    def _record(self, score: float) -> None:
        self._recent.append(score)
        bisect.insort(self._sorted, score)
        if len(self._recent) > self.window:
            old = self._recent.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, old)]


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
    """Scores a request and compares the score with the calibrated threshold."""

    def __init__(
        self,
        target_large_share: float,
        window: int = 500,
        *,
        scorer: PromptScorer | None = None,
        initial_threshold: float = 0.5,
    ) -> None:
        self.scorer = scorer or PromptScorer()
        self.calibrator = ShareCalibrator(
            target_large_share, window=window, initial_threshold=initial_threshold
        )

    def decide(self, s: RouteSignals) -> RouteDecision:
        score, features, kind = self.scorer.assess(s)
        large, threshold = self.calibrator.decide(score)
        if large:
            return RouteDecision("large", score, threshold, "auto:score>=threshold", features, kind)
        # A score equal to the threshold may go small to keep the share (see the calibrator).
        reason = "auto:tie-small" if score == threshold else "auto:score<threshold"
        return RouteDecision("small", score, threshold, reason, features, kind)
