"""Group membership from headwater.principals.v1 applies to the next request: no
re-indexing, no new credential."""

from __future__ import annotations

import json
import uuid

import pytest
from fastapi.testclient import TestClient

from core.kafka import KafkaProducer
from core.settings import Settings
from tests.e2e.conftest import CONNECTOR_KEY, DIRECTORY_KEY, HR_KEY, auth, eventually, search

pytestmark = pytest.mark.e2e


def test_membership_changes_grant_and_revoke_access_on_the_next_request(
    client: TestClient, settings: Settings
) -> None:
    doc_id = f"dir:{uuid.uuid4().hex[:8]}"
    query = "succession plan for the finance director"
    posted = client.post(
        "/v1/documents",
        json={
            "doc_id": doc_id,
            "version": 1,
            "acl": {"groups": ["hr"]},
            "text": "Succession plan: the finance director role passes to the deputy in May.",
        },
        headers=auth(CONNECTOR_KEY),
    )
    assert posted.status_code == 202

    def sees(key: str) -> bool:
        return any(hit["doc_id"] == doc_id for hit in search(client, key, query))

    eventually(lambda: sees(HR_KEY), "indexing")
    assert not sees(DIRECTORY_KEY)
    producer = KafkaProducer(settings.kafka_bootstrap)

    def membership(value: dict[str, object] | None) -> None:
        producer.send(
            settings.principals_topic,
            key=b"acme/dana@acme.com",
            value=None if value is None else json.dumps(value).encode(),
        )

    try:
        membership({"groups": ["eng", "hr"]})
        eventually(lambda: sees(DIRECTORY_KEY), "dana gaining access through hr")
        membership({"groups": ["eng"]})
        eventually(lambda: not sees(DIRECTORY_KEY), "dana losing access")
        membership({"groups": ["eng"], "disabled": True})
        eventually(
            lambda: (
                client.post(
                    "/v1/search", json={"query": "x"}, headers=auth(DIRECTORY_KEY)
                ).status_code
                == 401
            ),
            "the disabled account being refused",
        )
        refused = client.post("/v1/search", json={"query": "x"}, headers=auth(DIRECTORY_KEY))
        assert refused.json()["error"]["code"] == "account_disabled"
    finally:
        producer.close()
