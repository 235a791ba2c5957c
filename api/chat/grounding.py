"""Grounded answers: what happens when the caller may read nothing relevant, and which
sources an answer used.

- A source grounds an answer only when its relevance (the question's cosine similarity
  with the chunk, the hit's dense score) reaches ``grounding_min_score``. Under the tenant's
  policy ``refuse`` (the default), a question with no such source is answered by
  :data:`REFUSAL` without calling a model: nothing can be invented, and nothing is spent.
  Under ``answer`` the model speaks without sources (its system prompt says none matched).
- Citations list the sources the answer used: those it cites as ``[n]`` (the prompt asks
  for that). An answer that cites none is returned with the prompt's sources, each marked
  ``used: false``: the model did not say which it used.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncGenerator, Sequence
from typing import Any, Literal

from api.chat.protocol import Citation
from retrieval.schema import Hit

GroundingPolicy = Literal["refuse", "answer"]
REFUSAL = (
    "I found nothing in the documents you have access to that answers this question, so I "
    "cannot answer it from your organisation's sources."
)
REFUSED_REASON = "grounding:no-readable-source"
_MARKER = re.compile(r"\[(\d{1,2})\]")


def relevant(hits: Sequence[Hit], *, min_score: float) -> list[Hit]:
    """The hits whose relevance reaches the floor, in rank order."""
    return [hit for hit in hits if hit.score >= min_score]


def used_citations(answer: str, citations: Sequence[Citation]) -> list[Citation]:
    """The citations the answer refers to by number (in the prompt's order); all of them,
    marked ``used=False``, when it refers to none."""
    cited = {int(n) for n in _MARKER.findall(answer)}
    used = [c for n, c in enumerate(citations, start=1) if n in cited]
    if used:
        return used
    return [c.model_copy(update={"used": False}) for c in citations]


def refusal_completion(model: str, extension: dict[str, Any]) -> dict[str, Any]:
    """The chat completion of a refusal (OpenAI's shape; no tokens were generated)."""
    return {
        "id": f"chatcmpl-hw-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": REFUSAL},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        "headwater": extension,
    }


async def refusal_chunks(model: str, *, include_usage: bool) -> AsyncGenerator[dict[str, Any]]:
    """The refusal as the chunks of a stream (role and content, then the finish)."""
    base = {
        "id": f"chatcmpl-hw-{uuid.uuid4().hex}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }
    delta = {"role": "assistant", "content": REFUSAL}
    yield {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
    yield {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    if include_usage:
        usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        yield {**base, "choices": [], "usage": usage}
