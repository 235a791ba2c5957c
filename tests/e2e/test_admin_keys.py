"""Key management over HTTP: admins only, within their tenant; a revoked key is
refused on its next use."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from acl.models import Principal
from core.settings import Settings
from headwater.keys_cli import open_registry
from headwater.processes import build_app
from tests.e2e.conftest import ADMIN_KEY, HR_KEY, auth, eventually

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
    assert response.status_code == 403 and response.json()["error"]["code"] == "missing_role"
    missing = client.delete("/v1/admin/keys/000000000000", headers=auth(ADMIN_KEY))
    assert missing.status_code == 404


def test_keys_on_the_topic_hold_across_two_api_replicas(settings: Settings, tmp_path: Path) -> None:
    """Two API apps (each its own store and followers) on one keys topic of their own: a
    key created through one replica's admin API works on the other; revoked through the
    other, it fails on both within the followers' lag."""
    shared = settings.model_copy(
        update={"api_keys_source": "topic", "keys_topic": f"keys-{uuid.uuid4().hex[:8]}"}
    )
    with open_registry(shared) as registry:  # the operator's first admin key (CLI path)
        admin_key, _ = registry.create(
            Principal(tenant="acme", user_id="root@acme.com", roles=("admin",))
        )
    one = shared.model_copy(update={"data_dir": tmp_path / "one"})
    two = shared.model_copy(update={"data_dir": tmp_path / "two"})
    with (
        TestClient(build_app(one, run_ingest=False)) as first,
        TestClient(build_app(two, run_ingest=False)) as second,
    ):
        created = first.post(
            "/v1/admin/keys", json={"user_id": "bot@acme.com"}, headers=auth(admin_key)
        )
        assert created.status_code == 201, created.text
        key, key_id = created.json()["key"], created.json()["id"]
        assert _status(first, key) == 200  # at once on the replica that wrote it
        eventually(lambda: _status(second, key) == 200, "the key reaching the other replica", 10)
        revoked = second.delete(f"/v1/admin/keys/{key_id}", headers=auth(admin_key))
        assert revoked.status_code == 200 and revoked.json()["revoked_at"]
        assert _status(second, key) == 401
        eventually(lambda: _status(first, key) == 401, "the revocation reaching replica one", 10)


def _status(api: TestClient, key: str) -> int:
    return api.post("/v1/search", json={"query": "x"}, headers=auth(key)).status_code
