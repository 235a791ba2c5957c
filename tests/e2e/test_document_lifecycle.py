"""Documents written over HTTP and by a foreign producer (kcat), re-permissioned and
deleted: each change reaches search through Kafka and the worker."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid

import pytest
from fastapi.testclient import TestClient

from core.settings import Settings
from tests.e2e.conftest import CONNECTOR_KEY, ENG_KEY, HR_KEY, auth, eventually, search

pytestmark = pytest.mark.e2e


def _sees(client: TestClient, key: str, doc_id: str, query: str) -> bool:
    return any(hit["doc_id"] == doc_id for hit in search(client, key, query))


def test_http_ingest_acl_change_and_delete(client: TestClient) -> None:
    doc_id = f"http:{uuid.uuid4().hex[:8]}"
    query = "quarterly offsite agenda in Lisbon"
    posted = client.post(
        "/v1/documents",
        json={
            "doc_id": doc_id,
            "version": 1,
            "title": "Offsite",
            "acl": {"groups": ["hr"]},
            "text": "The quarterly offsite agenda: Lisbon, workshops on Tuesday.",
        },
        headers=auth(CONNECTOR_KEY),
    )
    assert posted.status_code == 202, posted.text
    accepted = posted.json()
    assert accepted["topic"] == "headwater.documents.v1" and accepted["offset"] >= 0
    eventually(lambda: _sees(client, HR_KEY, doc_id, query), "hr seeing the new document")
    assert not _sees(client, ENG_KEY, doc_id, query)

    moved = client.put(
        f"/v1/documents/{doc_id}/acl",
        json={"version": 2, "acl": {"groups": ["eng"]}},
        headers=auth(CONNECTOR_KEY),
    )
    assert moved.status_code == 202
    eventually(lambda: not _sees(client, HR_KEY, doc_id, query), "hr losing access")
    assert _sees(client, ENG_KEY, doc_id, query)

    stale = client.put(
        f"/v1/documents/{doc_id}/acl",
        json={"version": 1, "acl": {"public": True}},
        headers=auth(CONNECTOR_KEY),
    )
    assert stale.status_code == 202
    deleted = client.delete(f"/v1/documents/{doc_id}?version=3", headers=auth(CONNECTOR_KEY))
    assert deleted.status_code == 202
    eventually(lambda: not _sees(client, ENG_KEY, doc_id, query), "the delete")
    assert not _sees(client, HR_KEY, doc_id, query), "the stale public ACL was never applied"


def test_only_connectors_may_write_documents(client: TestClient) -> None:
    response = client.post(
        "/v1/documents", json={"doc_id": "x", "version": 1, "text": "x"}, headers=auth(HR_KEY)
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "missing_role"


def test_any_producer_that_writes_the_documented_json_works(
    client: TestClient, settings: Settings
) -> None:
    kcat = shutil.which("kcat")
    assert kcat, "kcat is installed by 'make setup' (Debian package kcat)"
    doc_id = f"kcat:{uuid.uuid4().hex[:8]}"
    event = {
        "schema": "headwater.document/1",
        "op": "upsert",
        "tenant": "acme",
        "doc_id": doc_id,
        "version": 1,
        "acl": {"groups": ["hr"]},
        "title": "Parking",
        "text": "Visitor parking is on level minus two.",
    }
    subprocess.run(
        [
            kcat,
            "-P",
            "-b",
            settings.kafka_bootstrap,
            "-t",
            settings.documents_topic,
            "-k",
            f"acme/{doc_id}",
        ],
        input=json.dumps(event).encode(),
        check=True,
        timeout=30,
    )
    eventually(lambda: _sees(client, HR_KEY, doc_id, "visitor parking level"), "kcat's document")


def test_metrics_count_ingest_and_requests(client: TestClient) -> None:
    text = client.get("/metrics").text
    assert 'headwater_ingest_events_total{op="upsert",outcome="applied"}' in text
    assert "headwater_ingest_freshness_seconds_count" in text
    assert 'headwater_http_request_duration_seconds_count{method="POST",route="/v1/search"' in text
