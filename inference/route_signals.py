"""What the router knows about a request when it must choose a tier."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Tier = Literal["small", "large"]
CHARS_PER_TOKEN = 3  # the estimate the router budgets conversation length with


@dataclass(frozen=True)
class RouteSignals:
    """What the router knows about a request when it must choose a tier.

    ``embedding`` is the all-MiniLM-L6-v2 embedding of ``question`` (384 floats, unit
    length): the one retrieval computed for its search, passed on so the same text is
    never embedded twice. With retrieval off the caller embeds the question itself
    (about 5-15 ms on a CPU core, see BENCHMARKS.md); None makes the learned router
    fall back to the question's text features alone (a degraded mode).
    """

    question: str  # the last user message
    prompt_tokens: int  # estimate of the whole conversation
    turns: int  # number of user messages
    hits: int  # retrieval hits after ACL filtering (0 when retrieval is off or found nothing)
    top_score: float | None  # best retrieval score (cosine, 0..1) or None
    context_tokens: int  # tokens of retrieved context put in the prompt
    retrieval: bool  # whether retrieval ran
    embedding: Sequence[float] | None = None  # the question's embedding, or None

    @classmethod
    def from_messages(
        cls,
        messages: list[tuple[str, str]],
        *,
        hits: int = 0,
        top_score: float | None = None,
        context_tokens: int = 0,
        retrieval: bool = False,
        embedding: Sequence[float] | None = None,
    ) -> RouteSignals:
        """Signals of a conversation given as ``(role, text)`` pairs, oldest first;
        ``embedding`` is that of the last user message."""
        users = [text for role, text in messages if role == "user"]
        return cls(
            question=users[-1] if users else "",
            prompt_tokens=sum(len(text) for _, text in messages) // CHARS_PER_TOKEN,
            turns=len(users),
            hits=hits,
            top_score=top_score,
            context_tokens=context_tokens,
            retrieval=retrieval,
            embedding=embedding,
        )
