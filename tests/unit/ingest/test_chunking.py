from __future__ import annotations

import re

import pytest

from ingest.chunking import Chunker


def whitespace_tokens(text: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]


def test_windows_overlap_and_cover_the_text() -> None:
    words = [f"w{i}" for i in range(25)]
    chunker = Chunker(whitespace_tokens, max_tokens=10, overlap_tokens=3)
    chunks = chunker.split(" ".join(words))
    assert [c.chunk_no for c in chunks] == [0, 1, 2, 3]
    assert chunks[0].text.split() == words[0:10]
    assert chunks[1].text.split() == words[7:17]
    assert chunks[-1].text.split()[-1] == "w24"
    assert all(len(c.text.split()) <= 10 for c in chunks)


def test_short_text_is_one_chunk_and_empty_text_none() -> None:
    chunker = Chunker(whitespace_tokens, max_tokens=10, overlap_tokens=3)
    assert [c.text for c in chunker.split("  just a few words ")] == ["just a few words"]
    assert chunker.split("   ") == []


def test_overlap_must_be_smaller_than_window() -> None:
    with pytest.raises(ValueError):
        Chunker(whitespace_tokens, max_tokens=4, overlap_tokens=4)
