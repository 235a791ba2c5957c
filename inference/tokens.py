"""Counting prompt tokens as the served model counts them, so a prompt fits its window.

The gateway fits retrieved sources into what is left of the model's context window. A
character estimate (three characters a token) holds for English prose only: Chinese,
Japanese, code or numbers take far more tokens per character, and such a prompt would
overflow the window (vLLM then refuses the request). So the budget is counted with the
served model's own tokenizer (its ``tokenizer.json``, read by Hugging Face's
``tokenizers`` in-process: ~20 us for a 1,000-character source, no network).

Without a tokenizer file the counter falls back to the text's UTF-8 length in bytes: an
upper bound for byte-level BPE and byte-fallback tokenizers (every token covers at least
one byte), so a prompt can never overflow, at the price of using about a third of the
window for English. A warning at start says how to set the file.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

from tokenizers import Tokenizer

_log = logging.getLogger(__name__)


class TokenCounter(Protocol):
    """How many tokens a text takes in a model's prompt."""

    name: str

    def count(self, text: str) -> int: ...


class ModelTokenizer:
    """The served model's own tokenizer (a ``tokenizer.json``)."""

    def __init__(self, path: Path):
        file = path / "tokenizer.json" if path.is_dir() else path
        self._tokenizer = Tokenizer.from_file(str(file))
        self.name = f"tokenizer:{file.parent.name}"

    def count(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)


class Utf8Bound:
    """One token per UTF-8 byte: never fewer tokens than a real tokenizer counts."""

    name = "utf8-bytes"

    def count(self, text: str) -> int:
        return len(text.encode("utf-8"))


class LargestCount:
    """The largest count of several tokenizers (a prompt fits whichever tier serves it)."""

    def __init__(self, counters: list[TokenCounter]):
        self._counters = counters
        self.name = "+".join(counter.name for counter in counters)

    def count(self, text: str) -> int:
        return max(counter.count(text) for counter in self._counters)


def open_token_counter(paths: list[Path | None]) -> TokenCounter:
    """A counter for the tiers' tokenizer files (``None`` where a tier has none)."""
    counters: list[TokenCounter] = [ModelTokenizer(path) for path in paths if path is not None]
    if len(counters) < len(paths) or not counters:
        _log.warning(
            "no tokenizer file for every model tier (HEADWATER_LLM_SMALL_TOKENIZER, "
            "HEADWATER_LLM_LARGE_TOKENIZER): prompts are budgeted at one token per UTF-8 "
            "byte, which never overflows but fills about a third of the window"
        )
        counters.append(Utf8Bound())
    return counters[0] if len(counters) == 1 else LargestCount(counters)
