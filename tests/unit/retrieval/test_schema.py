from __future__ import annotations

import uuid

from retrieval.schema import point_id, versioned_collection


def test_point_ids_are_deterministic_uuids_per_chunk() -> None:
    first = point_id("acme", "doc", 0)
    assert first == point_id("acme", "doc", 0)
    assert uuid.UUID(first).version == 5
    assert (
        len({point_id("acme", "doc", 0), point_id("acme", "doc", 1), point_id("beta", "doc", 0)})
        == 3
    )


def test_collection_is_named_after_its_model() -> None:
    assert versioned_collection("headwater_chunks", "all-MiniLM-L6-v2", 384) == (
        "headwater_chunks__all_minilm_l6_v2_384"
    )
