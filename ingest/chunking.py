"""Token-aware chunking with overlap, sized to the embedding model's window."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

TokenOffsets = Callable[[str], list[tuple[int, int]]]


@dataclass(frozen=True)
class Chunk:
    chunk_no: int
    text: str
    start_char: int
    end_char: int


class Chunker:
    """Splits text into windows of at most ``max_tokens`` model tokens, overlapping by
    ``overlap_tokens``, cut on token boundaries so no word-piece is split."""

    def __init__(self, token_offsets: TokenOffsets, *, max_tokens: int, overlap_tokens: int):
        if not 0 <= overlap_tokens < max_tokens:
            raise ValueError("overlap_tokens must be in [0, max_tokens)")
        self._token_offsets = token_offsets
        self._max_tokens = max_tokens
        self._step = max_tokens - overlap_tokens

    def split(self, text: str) -> list[Chunk]:
        offsets = self._token_offsets(text)
        if not offsets:
            return []
        chunks: list[Chunk] = []
        start = 0
        while True:
            window = offsets[start : start + self._max_tokens]
            begin, end = window[0][0], window[-1][1]
            chunks.append(Chunk(len(chunks), text[begin:end], begin, end))
            if start + self._max_tokens >= len(offsets):
                return chunks
            start += self._step
