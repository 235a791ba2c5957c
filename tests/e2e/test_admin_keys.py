"""Key management over HTTP: admins only, within their tenant; a revoked key is
refused on its next use."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.e2e.conftest import ADMIN_KEY, HR_KEY, auth

pytestmark = pytest.mark.e2e


def test_admin_creates_lists_and_revokes_a_key(client: TestClient) -> None:
    created = client.post(
        "/v1/admin/keys",
        json={"user_id": "new@acme.com", "groups": ["eng"]},
        headers=auth(ADMIN_KEY),
    )
    assert created.status_code == 201, created.text
    key, key_id = created.json()["key"], created.json()["id"]
    assert created.json()["tenant"] == "acme"
    assert client.post("/v1/search", json={"query": "x"}, headers=auth(key)).status_code == 200
    listed = client.get("/v1/admin/keys", headers=auth(ADMIN_KEY)).json()["data"]
    assert key_id in {entry["id"] for entry in listed}
    assert all("key" not in entry for entry in listed)
    assert client.delete(f"/v1/admin/keys/{key_id}", headers=auth(ADMIN_KEY)).status_code == 200
    refused = client.post("/v1/search", json={"query": "x"}, headers=auth(key))
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"


def test_only_admins_manage_keys(client: TestClient) -> None:
    response = client.get("/v1/admin/keys", headers=auth(HR_KEY))
    assert response.status_code == 403 and response.json()["error"]["code"] == "not_an_admin"
    missing = client.delete("/v1/admin/keys/000000000000", headers=auth(ADMIN_KEY))
    assert missing.status_code == 404
