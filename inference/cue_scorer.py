"""The hand-set cue scorer: question-type cues and conversation length, in log-odds,
and the retrieval prior that the learned router (``inference.scoring``) keeps.

This was the ``model: auto`` scorer before the learned one (issue 18). It stays as a
baseline and as the source of two things the learned model cannot learn yet:

- the **retrieval prior** (``retrieval_prior``): hits after the ACL filter, the best
  retrieval score and the retrieved context size, in log-odds, weighted by how much the
  question's type depends on finding the caller's documents. No labelled RAG outcomes
  exist yet, so these weights are set by hand and documented here, not fitted;
- the **conversation prior** (``conversation_prior``): earlier turns and conversation
  tokens beyond the question, which a model trained on single prompts never saw.

Pure Python, microseconds.
"""

from __future__ import annotations

import math

from inference.cues import _is_simple_ask, _multi_step_cues, _question_type, _Text
from inference.route_signals import CHARS_PER_TOKEN, RouteSignals

# The scorer is a hand-set logistic model: score = sigmoid(sum of contributions), each
# contribution a weight times a bounded feature, in log-odds (+1 about triples the odds
# of "needs large"). The weights encode a routing intuition (a factual lookup with a
# strongly matching source is what a small model answers well; a question with nothing
# to ground on, or one that needs reasoning, code, arithmetic or comparison, is where a
# large model earns its cost). They were set by hand, never fitted: until labelled
# outcomes of real RAG requests exist there is nothing honest to fit them to.
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


def retrieval_prior(s: RouteSignals, kind: str) -> dict[str, float]:
    """The retrieval signals' log-odds contributions for a question of type ``kind``.

    Retrieval off says nothing either way (all zero). Retrieval on: nothing readable
    found adds ``W_NO_HITS`` times the type's grounding need; a best score above
    ``TOP_SCORE_PIVOT`` lowers the odds (a strong source is what a small model answers
    from well) and one below raises them; more retrieved context raises them a little.
    """
    if not s.retrieval:
        return dict.fromkeys(RETRIEVAL_FEATURES, 0.0)
    need = GROUNDING_NEED[kind]
    context = W_CONTEXT_TOKENS * min(s.context_tokens / 1000, 4.0)
    if s.hits > 0 and s.top_score is not None:
        top = W_TOP_SCORE * need * (s.top_score - TOP_SCORE_PIVOT)
        return {"no_hits": 0.0, "top_score": top, "context_tokens": context}
    return {"no_hits": W_NO_HITS * need, "top_score": 0.0, "context_tokens": context}


def conversation_prior(s: RouteSignals) -> dict[str, float]:
    """Earlier user turns and conversation tokens beyond the question, in log-odds."""
    beyond = max(s.prompt_tokens - len(s.question) // CHARS_PER_TOKEN, 0)
    return {
        "turns": W_TURNS * min(max(s.turns - 1, 0), 6),
        "history_tokens": W_PROMPT_TOKENS * min(beyond / 1000, 4.0),
    }


class PromptScorer:
    """Scores how likely a request needs the large model, from prompt and retrieval cues
    with hand-set weights (the pre-issue-18 scorer; now a baseline).

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
        question_tokens = len(s.question) / CHARS_PER_TOKEN
        parts = {
            "bias": BIAS,
            "type": TYPE_WEIGHTS[kind],
            "question_length": W_QUESTION_LENGTH * min(question_tokens / 32, 4.0),
            "simple_ask": W_SIMPLE_ASK * _is_simple_ask(text),
            "multi_step": W_MULTI_STEP * min(_multi_step_cues(text), 3),
            "turns": W_TURNS * min(max(s.turns - 1, 0), 6),
            "prompt_tokens": W_PROMPT_TOKENS * min(s.prompt_tokens / 1000, 4.0),
        }
        if self.use_retrieval:
            parts.update(retrieval_prior(s, kind))
        else:
            parts.update(dict.fromkeys(RETRIEVAL_FEATURES, 0.0))
        return 1.0 / (1.0 + math.exp(-sum(parts.values()))), parts, kind
