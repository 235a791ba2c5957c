from __future__ import annotations

import math

from retrieval.binding import PROBE_MIN_COSINE, CollectionBinding


def _binding(**changes: object) -> CollectionBinding:
    fields: dict[str, object] = {
        "model": "all-MiniLM-L6-v2",
        "dim": 3,
        "chunk_tokens": 200,
        "chunk_overlap_tokens": 40,
        "probe": (1.0, 0.0, 0.0),
        "engine": "torch",
        "consumer_group": "headwater-ingest",
    }
    fields.update(changes)
    return CollectionBinding(**fields)  # type: ignore[arg-type]


def test_any_engine_of_the_same_model_and_chunking_may_serve() -> None:
    # int8 or bf16 engines move the probe a little, never past the bound.
    nearby = (math.cos(0.1), math.sin(0.1), 0.0)
    assert _binding().differences(_binding(probe=nearby, engine="onnx-int8")) == []


def test_model_dimension_weights_and_chunking_each_count() -> None:
    collection = _binding()
    assert collection.differences(_binding(model="bge-small")) == [
        "model 'all-MiniLM-L6-v2' vs 'bge-small'"
    ]
    assert collection.differences(_binding(dim=4, probe=(1.0, 0.0, 0.0, 0.0))) == [
        "dimension 3 vs 4"
    ]
    (weights,) = collection.differences(_binding(probe=(0.0, 1.0, 0.0)))
    assert weights.startswith("weights") and str(PROBE_MIN_COSINE) in weights
    assert collection.differences(_binding(chunk_tokens=48, chunk_overlap_tokens=8)) == [
        "chunking 200/40 tokens vs 48/8"
    ]


def test_a_binding_round_trips_through_its_payload() -> None:
    binding = _binding()
    assert CollectionBinding.from_payload(binding.to_payload()) == binding
