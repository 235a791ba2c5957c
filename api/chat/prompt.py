"""The grounded prompt: numbered sources the model must answer from."""

from __future__ import annotations

from inference.tokens import TokenCounter
from retrieval.schema import Hit

GROUNDING = (
    "You are Headwater, an assistant that answers from the organisation's documents. "
    "Answer the question using only the numbered sources below and cite them like [1]. "
    "If the sources do not contain the answer, say that you could not find it."
)
NO_SOURCES = (
    "You are Headwater, an assistant that answers from the organisation's documents. "
    "No document the user may read matches this question: say that you could not find "
    "it in the documents available to them. Do not guess."
)
# Tokens a source costs beyond its text: its number, title and the blank lines around it.
SOURCE_OVERHEAD_TOKENS = 16


def fit_sources(hits: list[Hit], *, budget_tokens: int, tokens: TokenCounter) -> list[Hit]:
    """The best-scoring hits whose text fits in ``budget_tokens`` (in rank order), each
    counted with the served model's tokenizer (``inference.tokens``)."""
    kept: list[Hit] = []
    used = 0
    for hit in hits:
        cost = tokens.count(hit.chunk.text) + SOURCE_OVERHEAD_TOKENS
        if used + cost > budget_tokens:
            break
        kept.append(hit)
        used += cost
    return kept


def system_prompt(sources: list[Hit]) -> str:
    """The system message that carries the sources (never logged by default)."""
    if not sources:
        return NO_SOURCES
    blocks = [
        f"[{n}] {hit.chunk.title or hit.doc_id}\n{hit.chunk.text}"
        for n, hit in enumerate(sources, start=1)
    ]
    return GROUNDING + "\n\nSources:\n\n" + "\n\n".join(blocks)
