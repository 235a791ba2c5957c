from __future__ import annotations

import json
from pathlib import Path

import pytest

from acl.keys import ApiKeyAuthenticator, hash_key
from core.errors import Unauthenticated


def _write(tmp_path: Path, entries: list[dict[str, object]]) -> Path:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"keys": entries}))
    return path


def test_plain_and_hashed_keys_resolve_to_their_principals(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        [
            {"key": "k-alice", "tenant": "acme", "user_id": "alice", "groups": ["hr"]},
            {"key_sha256": hash_key("k-bob"), "tenant": "acme", "user_id": "bob"},
        ],
    )
    auth = ApiKeyAuthenticator.from_file(path)
    assert auth.authenticate("k-alice").groups == ("hr",)
    assert auth.authenticate("k-bob").user_id == "bob"


def test_unknown_key_is_rejected_without_detail(tmp_path: Path) -> None:
    auth = ApiKeyAuthenticator.from_file(
        _write(tmp_path, [{"key": "k", "tenant": "t", "user_id": "u"}])
    )
    with pytest.raises(Unauthenticated) as info:
        auth.authenticate("k2")
    assert info.value.message == "invalid API key"


def test_bad_key_file_says_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not found"):
        ApiKeyAuthenticator.from_file(tmp_path / "missing.json")
    path = _write(tmp_path, [{"tenant": "t", "user_id": "u"}])
    with pytest.raises(ValueError, match="exactly one of 'key' or 'key_sha256'"):
        ApiKeyAuthenticator.from_file(path)


def test_created_keys_work_are_stored_hashed_and_fail_right_after_revocation(
    tmp_path: Path,
) -> None:
    from acl.keys import KeyStore
    from acl.models import Principal

    path = _write(tmp_path, [{"key": "k-old", "tenant": "acme", "user_id": "old"}])
    store = KeyStore(path)
    auth = ApiKeyAuthenticator.from_file(path)
    key, entry = store.create(Principal(tenant="acme", user_id="ci-bot", groups=("eng",)))
    assert key not in path.read_text() and entry.key_sha256 in path.read_text()
    assert auth.authenticate(key).user_id == "ci-bot"
    store.revoke(entry.key_id)
    with pytest.raises(Unauthenticated):
        auth.authenticate(key)
    assert auth.authenticate("k-old").user_id == "old"
    with pytest.raises(KeyError):
        store.revoke("000000000000")


def test_a_vanished_key_file_admits_nobody_and_a_broken_one_keeps_the_last_keys(
    tmp_path: Path,
) -> None:
    path = _write(tmp_path, [{"key": "k", "tenant": "t", "user_id": "u"}])
    auth = ApiKeyAuthenticator.from_file(path)
    path.write_text("{not json")
    assert auth.authenticate("k").user_id == "u"
    path.unlink()
    with pytest.raises(Unauthenticated):
        auth.authenticate("k")


def test_keys_cli_creates_lists_and_revokes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from headwater.cli import app

    path = _write(tmp_path, [])
    monkeypatch.setenv("HEADWATER_API_KEYS_FILE", str(path))
    runner = CliRunner()
    created = runner.invoke(
        app, ["keys", "create", "--tenant", "acme", "--user", "bot", "-g", "eng"]
    )
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[-1]
    auth = ApiKeyAuthenticator.from_file(path)
    assert auth.authenticate(key).groups == ("eng",)
    (entry,) = json.loads(path.read_text())["keys"]
    key_id = entry["key_sha256"][:12]
    listed = runner.invoke(app, ["keys", "list"], env={"COLUMNS": "200"})
    assert key_id in listed.output and key not in listed.output
    assert runner.invoke(app, ["keys", "revoke", key_id]).exit_code == 0
    with pytest.raises(Unauthenticated):
        auth.authenticate(key)
    assert runner.invoke(app, ["keys", "revoke", "nope"]).exit_code == 1
