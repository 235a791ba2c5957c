"""The bf16 torch engine: the same model in bfloat16, unit vectors close to fp32."""

from __future__ import annotations

import math

import pytest

from core.settings import Settings
from retrieval.embedding import (
    SentenceTransformerEmbedder,
    native_bf16,
    open_embedder,
    resolve_dtype,
)

pytestmark = pytest.mark.skipif(
    not native_bf16(), reason="this CPU has no native bf16 (auto picks float32 here)"
)

TEXTS = [
    "Parental leave is 16 weeks at full pay for every employee.",
    "Deploy the release on Tuesday and roll back if latency rises.",
    "x",
]


def test_auto_picks_bf16_on_this_cpu_and_float32_stays_float32() -> None:
    assert resolve_dtype("auto") == "bfloat16"
    assert resolve_dtype("float32") == "float32"


def test_bf16_vectors_are_unit_length_and_close_to_fp32(
    embedder: SentenceTransformerEmbedder,
) -> None:
    bf16 = SentenceTransformerEmbedder(None, model_name=embedder.model_name, dtype="bfloat16")
    for reference, vector in zip(embedder.embed(TEXTS), bf16.embed(TEXTS), strict=True):
        assert math.isclose(math.fsum(v * v for v in vector), 1.0, abs_tol=1e-5)
        assert math.fsum(a * b for a, b in zip(reference, vector, strict=True)) > 0.999


def test_settings_default_to_the_cpu_s_best_torch_dtype() -> None:
    engine = open_embedder(Settings())
    assert isinstance(engine, SentenceTransformerEmbedder)
    assert engine.dtype == "bfloat16"
    forced = open_embedder(Settings(embedding_dtype="float32"))
    assert isinstance(forced, SentenceTransformerEmbedder)
    assert forced.dtype == "float32"
