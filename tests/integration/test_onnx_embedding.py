"""The int8 ONNX embedder, built from the real all-MiniLM-L6-v2, against the fp32 model."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from retrieval import onnx_embedding
from retrieval.embedding import SentenceTransformerEmbedder
from retrieval.onnx_embedding import OnnxInt8Embedder

pytestmark = pytest.mark.integration

TEXTS = [
    "Salary bands are reviewed every January.",
    "Visitor parking is on level minus two.",
    "Laptops are replaced every three years; ask the IT helpdesk for an earlier swap.",
    "Travel expenses above 500 EUR need a manager's approval before booking.",
    "Kurz: Die Kantine öffnet um 11:30 Uhr.",
]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx")


@pytest.fixture(scope="module")
def int8(cache_dir: Path) -> OnnxInt8Embedder:
    """Built from scratch into an empty cache folder."""
    assert not list(cache_dir.iterdir())
    return OnnxInt8Embedder(None, model_name="all-MiniLM-L6-v2", cache_dir=cache_dir)


def test_vectors_are_unit_length_and_close_to_the_fp32_model(
    int8: OnnxInt8Embedder, embedder: SentenceTransformerEmbedder
) -> None:
    assert int8.dim == embedder.dim == 384
    assert int8.max_tokens == embedder.max_tokens == 256
    got, want = int8.embed(TEXTS), embedder.embed(TEXTS)
    assert len(got) == len(TEXTS)
    for vector, reference in zip(got, want, strict=True):
        assert len(vector) == 384
        assert math.isclose(sum(v * v for v in vector), 1.0, rel_tol=1e-5)
        assert sum(g * w for g, w in zip(vector, reference, strict=True)) >= 0.98


def test_batches_keep_input_order_and_match_single_texts(int8: OnnxInt8Embedder) -> None:
    batched = OnnxInt8Embedder(
        None, model_name="all-MiniLM-L6-v2", cache_dir=int8.model_path.parent, batch_size=2
    )
    texts = TEXTS * 3  # several batches, sorted by length inside embed
    # Not identical: dynamic quantisation scales each activation tensor by the range of
    # the whole batch, so a vector depends a little on its batch mates.
    for text, vector in zip(texts, batched.embed(texts), strict=True):
        alone = int8.embed([text])[0]
        assert sum(a * b for a, b in zip(alone, vector, strict=True)) > 0.98
    assert int8.embed([]) == []


def test_long_text_is_truncated_to_max_tokens(
    int8: OnnxInt8Embedder, embedder: SentenceTransformerEmbedder
) -> None:
    long_text = " ".join(["quarterly budget review for the finance team"] * 80)
    assert len(int8.token_offsets(long_text)) > 256
    got, want = int8.embed([long_text])[0], embedder.embed([long_text])[0]
    assert sum(g * w for g, w in zip(got, want, strict=True)) >= 0.98


def test_token_offsets_match_the_fp32_embedder(
    int8: OnnxInt8Embedder, embedder: SentenceTransformerEmbedder
) -> None:
    long_text = " ".join(TEXTS * 40)  # past max_tokens: offsets are never truncated
    for text in [*TEXTS, long_text, ""]:
        assert int8.token_offsets(text) == embedder.token_offsets(text)


def test_a_second_construction_loads_the_cached_model(
    int8: OnnxInt8Embedder, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert [p.name for p in cache_dir.iterdir()] == [int8.model_path.name]  # no temp left
    before = int8.model_path.stat()

    def no_rebuild(*args: object) -> None:
        raise AssertionError("the cached model was rebuilt")

    monkeypatch.setattr(onnx_embedding, "build_int8_model", no_rebuild)
    again = OnnxInt8Embedder(None, model_name="all-MiniLM-L6-v2", cache_dir=cache_dir)
    assert again.model_path == int8.model_path
    after = again.model_path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert again.embed(TEXTS[:1]) == int8.embed(TEXTS[:1])


def test_settings_select_the_int8_engine(tmp_path: Path) -> None:
    from core.settings import Settings
    from retrieval.embedding import open_embedder

    engine = open_embedder(Settings(embedding_backend="onnx-int8", data_dir=tmp_path))
    assert isinstance(engine, OnnxInt8Embedder)
    assert any((tmp_path / "models" / "onnx").iterdir())
