"""Reliability at small size (``python -m bench.chaos`` runs the same at scale): kill -9
the worker three times, fail the store for a stretch and restart the broker while
documents, updates, ACL changes and deletes stream in; then nothing is missing,
nothing deleted lingers, nothing is stale and every chunk has its document's ACL."""

from __future__ import annotations

import pytest

from bench.chaos import run

pytestmark = pytest.mark.integration


def test_no_acknowledged_document_is_lost_and_no_stale_state_survives() -> None:
    result = run(
        documents=120,
        changes=80,
        kills=3,
        outage_s=4,
        restart_broker=True,
        rate=3,  # slow enough that the broker restart lands mid-publish on a busy machine
        say=lambda line: None,
    )
    assert (result["kills"], result["broker_restarts"]) == (3, 1)
    assert result["acknowledged"] > 0
    assert {key: result[key] for key in ("missing", "phantom", "stale", "acl_mismatch")} == {
        "missing": 0,
        "phantom": 0,
        "stale": 0,
        "acl_mismatch": 0,
    }
