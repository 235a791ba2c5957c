from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from inference.router_data import (
    OutcomeFileError,
    embed_cached,
    load_outcomes,
    prompt_bucket,
    split_of,
)


def _row(i: int, prompt: str, **extra: object) -> dict[str, object]:
    return {"id": f"x/{i}", "prompt": prompt, "strong_score": 1, "weak_score": 0, **extra}


def _write(path: Path, rows: list[dict[str, object]]) -> Path:
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode("utf-8"), mtime=0))
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_the_split_is_a_function_of_the_prompt_text() -> None:
    prompts = [f"question {i}" for i in range(2000)]
    parts = [split_of(p) for p in prompts]
    assert parts == [split_of(p) for p in prompts]  # stable
    shares = {part: parts.count(part) / len(parts) for part in ("test", "valid", "train")}
    assert shares["test"] == pytest.approx(0.20, abs=0.03)
    assert shares["valid"] == pytest.approx(0.15, abs=0.03)
    assert all(0 <= prompt_bucket(p) < 100 for p in prompts)


def test_load_drops_contaminated_rows_and_reads_gzip(tmp_path: Path) -> None:
    rows = [_row(0, "a"), _row(1, "b", routellm_contaminated=True), _row(2, "c\u2028d")]
    data = load_outcomes([_write(tmp_path / "o.jsonl.gz", rows)])
    assert data.ids == ["x/0", "x/2"] and data.dropped_contaminated == 1
    assert data.prompts[1] == "c\u2028d"  # a line separator inside a string is not a line
    kept = load_outcomes([tmp_path / "o.jsonl.gz"], keep_contaminated=True)
    assert len(kept) == 3 and kept.sha256 == data.sha256
    assert data.strong.tolist() == [1.0, 1.0] and data.split("all") is data


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("{not json", "Expecting property name"),
        ('{"id": 1, "prompt": "", "strong_score": 1, "weak_score": 0}', "non-empty"),
        ('{"id": 1, "prompt": "p", "strong_score": "yes", "weak_score": 0}', "numbers"),
        ('{"id": 1, "prompt": "p", "weak_score": 0}', "strong_score"),
    ],
)
def test_a_bad_line_is_named(tmp_path: Path, line: str, problem: str) -> None:
    path = tmp_path / "o.jsonl"
    path.write_text(json.dumps(_row(0, "a")) + "\n" + line + "\n")
    with pytest.raises(OutcomeFileError, match=f"o.jsonl:2: .*{problem}"):
        load_outcomes([path])


class _CountingEmbedder:
    def __init__(self) -> None:
        self.calls = 0

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls += 1
        return [[float(len(t)), 1.0] for t in texts]


def test_embeddings_are_cached_by_prompt_text(tmp_path: Path) -> None:
    engine = _CountingEmbedder()
    first = embed_cached(["ab", "c"], lambda: engine, model_name="m", cache_dir=tmp_path)
    again = embed_cached(["ab", "c"], lambda: engine, model_name="m", cache_dir=tmp_path)
    assert engine.calls == 1 and np.array_equal(first, again)
    embed_cached(["ab", "cd"], lambda: engine, model_name="m", cache_dir=tmp_path)
    assert engine.calls == 2  # other prompts, another entry
