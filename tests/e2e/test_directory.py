"""Group membership from headwater.principals.v1 applies to the next request: no
re-indexing, no new credential."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from core.kafka import KafkaProducer
from core.settings import Settings
from headwater.processes import build_app
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


def test_a_malformed_record_never_stops_revocation_and_a_dead_follower_fails_closed(
    settings: Settings, tmp_path: Path
) -> None:
    """Its own API (no worker) on a principals topic of its own: a malformed record, then
    a group removal: the removal takes effect. Then its follower stops (as if its thread
    died): /readyz turns red and the user the directory knows gets 503, not stale groups,
    while a user it never heard of keeps the groups of their key."""
    own = settings.model_copy(
        update={"principals_topic": f"principals-{uuid.uuid4().hex[:8]}", "data_dir": tmp_path}
    )
    producer = KafkaProducer(own.kafka_bootstrap)

    def send(value: bytes | None) -> None:
        producer.send(own.principals_topic, key=b"acme/dana@acme.com", value=value)

    try:
        with TestClient(build_app(own, run_ingest=False)) as api:
            send(b'{"groups": ["eng", "hr"]}')
            eventually(lambda: _groups(api) == ["eng", "hr"], "dana in hr")
            send(b'{"groups": "not a list"}')  # malformed: counted, fails closed for dana
            eventually(lambda: _status(api, DIRECTORY_KEY) == 401, "the bad record refusing")
            send(b'{"groups": ["eng"]}')  # the removal of hr, after the bad record
            eventually(lambda: _groups(api) == ["eng"], "the group removal taking effect")

            services = api.app.state.services  # type: ignore[attr-defined]
            services.directory_follower.close()
            ready = api.get("/readyz")
            assert ready.status_code == 503 and ready.json()["checks"]["directory"] is False
            refused = api.post("/v1/search", json={"query": "x"}, headers=auth(DIRECTORY_KEY))
            assert refused.status_code == 503
            assert refused.json()["error"]["code"] == "directory_unavailable"
            assert refused.headers["retry-after"]
            assert _status(api, HR_KEY) == 200, "a user the directory never knew is served"
    finally:
        producer.close()


def _status(api: TestClient, key: str) -> int:
    return api.post("/v1/search", json={"query": "x"}, headers=auth(key)).status_code


def _groups(api: TestClient) -> list[str] | None:
    """Dana's groups as the API resolves them (through its own directory)."""
    services = api.app.state.services  # type: ignore[attr-defined]
    try:
        found = services.authenticator.authenticate(DIRECTORY_KEY)
        return list(services.directory.resolve(found).groups)
    except Exception:  # noqa: BLE001 - refused (disabled or malformed): no groups
        return None
