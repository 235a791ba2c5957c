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
