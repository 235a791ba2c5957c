"""A cached answer in OpenAI's shapes: a completion, or the chunks of a stream (its text
in pieces of a few words, so a streaming client sees a stream). A hit used no model:
its usage is zero tokens (what it saved is in ``headwater.cache.saved_tokens``)."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncGenerator
from typing import Any

from api.answer_cache import CachedAnswer

_NO_USAGE = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
_PIECE = re.compile(r"\S*\s*")  # a word and the space after it


def _base(answer: CachedAnswer, kind: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-hw-{uuid.uuid4().hex}",
        "object": kind,
        "created": int(time.time()),
        "model": answer.model,
    }


def cached_completion(answer: CachedAnswer) -> dict[str, Any]:
    message = {"role": "assistant", "content": answer.content}
    return {
        **_base(answer, "chat.completion"),
        "choices": [{"index": 0, "message": message, "finish_reason": answer.finish_reason}],
        "usage": dict(_NO_USAGE),
    }


async def cached_chunks(
    answer: CachedAnswer, *, include_usage: bool, words_per_chunk: int = 4
) -> AsyncGenerator[dict[str, Any]]:
    base = _base(answer, "chat.completion.chunk")
    words = [piece for piece in _PIECE.findall(answer.content) if piece]
    yield {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}
    for start in range(0, len(words), words_per_chunk):
        delta = {"content": "".join(words[start : start + words_per_chunk])}
        yield {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
    yield {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": answer.finish_reason}]}
    if include_usage:
        yield {**base, "choices": [], "usage": dict(_NO_USAGE)}
