"""Labelled routing outcomes: files of per-prompt grades of a strong and a weak model,
the fixed train/validation/test split of their prompts, and a cache of their embeddings.

An outcome file has one JSON object a line (``.jsonl``, or gzipped ``.jsonl.gz``) with
at least ``id``, ``prompt``, ``strong_score`` and ``weak_score``: the format of
RouteLLM's published outcomes in ``../shared/eval/router/`` (PROVENANCE.md there).
Rows flagged ``routellm_contaminated`` are dropped by default, as RouteLLM drops them
before reporting: they overlap the training data of RouteLLM's own routers.

The split is a pure function of the prompt text (a hash), so a prompt that occurs twice
(MMLU repeats 105) falls in one part, and train and test never share a prompt.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

Split = Literal["train", "valid", "test"]
# sha256 of the UTF-8 prompt, its first 4 bytes as a big-endian integer, modulo 100:
# buckets [0, 20) are the test split, [20, 35) validation, the rest training.
SPLIT_DEFINITION: dict[str, object] = {
    "bucket": "int.from_bytes(sha256(prompt.encode('utf-8')).digest()[:4], 'big') % 100",
    "test": [0, 20],
    "valid": [20, 35],
    "train": [35, 100],
}
_TEST_END, _VALID_END = 20, 35
Vectors = npt.NDArray[np.float32]


def prompt_bucket(prompt: str) -> int:
    """The prompt's bucket in 0..99 (see ``SPLIT_DEFINITION``)."""
    return int.from_bytes(hashlib.sha256(prompt.encode("utf-8")).digest()[:4], "big") % 100


def split_of(prompt: str) -> Split:
    """Which part of the fixed split a prompt belongs to."""
    bucket = prompt_bucket(prompt)
    if bucket < _TEST_END:
        return "test"
    return "valid" if bucket < _VALID_END else "train"


@dataclass(frozen=True)
class OutcomeSet:
    """The rows of one or more outcome files, in file order, as parallel columns."""

    ids: list[str]
    prompts: list[str]
    strong: npt.NDArray[np.float64]
    weak: npt.NDArray[np.float64]
    domains: list[str]  # MMLU subject or MT-Bench category; "" when the file has none
    sha256: str  # of the decompressed bytes of the files, in the order given
    dropped_contaminated: int

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, keep: Sequence[bool] | npt.NDArray[np.bool_]) -> OutcomeSet:
        """The rows where ``keep`` is true (same file hash: a subset names its source)."""
        mask = np.asarray(keep, dtype=bool)
        chosen = np.flatnonzero(mask)
        return OutcomeSet(
            [self.ids[i] for i in chosen],
            [self.prompts[i] for i in chosen],
            self.strong[mask],
            self.weak[mask],
            [self.domains[i] for i in chosen],
            self.sha256,
            self.dropped_contaminated,
        )

    def split(self, part: Split | Literal["all"]) -> OutcomeSet:
        """The rows of one part of the fixed split, or all of them."""
        if part == "all":
            return self
        return self.subset([split_of(p) == part for p in self.prompts])


class OutcomeFileError(ValueError):
    """An outcome file that cannot be read, with where and what."""


def load_outcomes(paths: Sequence[Path], *, keep_contaminated: bool = False) -> OutcomeSet:
    """The rows of ``paths``; raises :class:`OutcomeFileError` naming a bad line."""
    digest = hashlib.sha256()
    rows: list[tuple[str, str, float, float, str]] = []
    dropped = 0
    for path in paths:
        if not path.is_file():
            raise OutcomeFileError(f"{path}: no such file")
        raw = path.read_bytes()
        data = gzip.decompress(raw) if path.name.endswith(".gz") else raw
        digest.update(data)
        # split("\n"), not splitlines(): a JSON string may hold a raw U+2028, which
        # splitlines() would break a line at.
        for number, line in enumerate(data.decode("utf-8").split("\n"), start=1):
            if not line.strip():
                continue
            try:
                row = _row(json.loads(line))
            except (ValueError, KeyError, TypeError) as exc:
                raise OutcomeFileError(f"{path}:{number}: {exc!s}") from exc
            if row is None:
                continue
            if row[-1] and not keep_contaminated:
                dropped += 1
                continue
            rows.append(row[:-1])
    if not rows:
        raise OutcomeFileError(f"{', '.join(map(str, paths))}: no rows")
    ids, prompts, strong, weak, domains = zip(*rows, strict=True)
    return OutcomeSet(
        list(ids),
        list(prompts),
        np.array(strong, dtype=np.float64),
        np.array(weak, dtype=np.float64),
        list(domains),
        digest.hexdigest(),
        dropped,
    )


def _row(obj: dict[str, object]) -> tuple[str, str, float, float, str, bool] | None:
    prompt = obj["prompt"]
    if not isinstance(prompt, str) or not prompt:
        raise ValueError("'prompt' must be a non-empty string")
    strong, weak = obj["strong_score"], obj["weak_score"]
    if not isinstance(strong, int | float) or not isinstance(weak, int | float):
        raise ValueError("'strong_score' and 'weak_score' must be numbers")
    domain = obj.get("domain", obj.get("category", ""))
    contaminated = bool(obj.get("routellm_contaminated", False))
    return str(obj["id"]), prompt, float(strong), float(weak), str(domain or ""), contaminated


class TextEmbedder(Protocol):
    """What the router needs of an embedding engine (``retrieval.embedding.Embedder``)."""

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


def cache_path(prompts: Sequence[str], *, model_name: str, cache_dir: Path) -> Path:
    """Where :func:`embed_cached` keeps the embeddings of ``prompts`` by ``model_name``."""
    key = hashlib.sha256("\0".join(prompts).encode("utf-8")).hexdigest()[:24]
    return cache_dir / f"{key}-{model_name.replace('/', '_')}.npy"


def embed_cached(
    prompts: Sequence[str],
    open_embedder: Callable[[], TextEmbedder],
    *,
    model_name: str,
    cache_dir: Path,
    batch_size: int = 256,
    progress: Callable[[int], None] | None = None,
) -> Vectors:
    """The embeddings of ``prompts`` (float32, one row each), from ``cache_dir`` when a
    file for these prompts (the sha256 of their text) and ``model_name`` exists, else
    computed with the embedder ``open_embedder`` returns (opened only then) and stored
    there. ``progress`` is called with the number of prompts just embedded."""
    path = cache_path(prompts, model_name=model_name, cache_dir=cache_dir)
    if path.is_file():
        cached: Vectors = np.load(path)
        if progress is not None:
            progress(len(prompts))
        return cached
    embedder = open_embedder()
    parts: list[Vectors] = []
    for start in range(0, len(prompts), batch_size):
        batch = list(prompts[start : start + batch_size])
        parts.append(np.asarray(embedder.embed(batch), dtype=np.float32))
        if progress is not None:
            progress(len(batch))
    vectors = np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp.npy")
    np.save(partial, vectors)
    partial.replace(path)  # a crash mid-write never leaves a truncated cache entry
    return vectors
