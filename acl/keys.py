"""API-key authentication from a file that maps keys to principals.

The file (``HEADWATER_API_KEYS_FILE``) is JSON::

    {"keys": [
      {"key_sha256": "<hex sha256 of the key>", "tenant": "acme",
       "user_id": "alice@acme.com", "groups": ["hr"], "department": "hr"},
      {"key": "dev-only-plain-key", "tenant": "acme", "user_id": "bob@acme.com"}
    ]}

``key_sha256`` is the form to use anywhere but a laptop: the file then holds no
secret. Keys are looked up by their SHA-256, so a presented key is never compared
character by character.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from acl.models import Principal
from core.errors import Unauthenticated


class Authenticator(Protocol):
    """Turns a bearer credential into a principal, or raises ``Unauthenticated``."""

    def authenticate(self, credential: str) -> Principal: ...


class _KeyEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str | None = None
    key_sha256: str | None = None
    tenant: str
    user_id: str
    groups: list[str] = []
    department: str | None = None
    roles: list[str] = []

    @model_validator(mode="after")
    def _one_key(self) -> _KeyEntry:
        if (self.key is None) == (self.key_sha256 is None):
            raise ValueError("each entry needs exactly one of 'key' or 'key_sha256'")
        return self

    def digest(self) -> str:
        return self.key_sha256.lower() if self.key_sha256 else hash_key(self.key or "")


class _KeyFile(BaseModel):
    keys: list[_KeyEntry]


def hash_key(key: str) -> str:
    """The SHA-256 hex digest under which a key is stored."""
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeyAuthenticator:
    """Authenticates API keys listed in a key file."""

    def __init__(self, principals_by_digest: dict[str, Principal]):
        self._by_digest = principals_by_digest

    @classmethod
    def from_file(cls, path: Path) -> ApiKeyAuthenticator:
        try:
            parsed = _KeyFile.model_validate(json.loads(path.read_text()))
        except FileNotFoundError as exc:
            raise ValueError(f"API key file {path} not found; set HEADWATER_API_KEYS_FILE") from exc
        except (json.JSONDecodeError, ValidationError) as exc:
            raise ValueError(f"API key file {path} is not valid: {exc}") from exc
        return cls(
            {
                entry.digest(): Principal(
                    tenant=entry.tenant,
                    user_id=entry.user_id,
                    groups=tuple(entry.groups),
                    department=entry.department,
                    roles=tuple(entry.roles),
                )
                for entry in parsed.keys
            }
        )

    def authenticate(self, credential: str) -> Principal:
        principal = self._by_digest.get(hash_key(credential))
        if principal is None:
            raise Unauthenticated("invalid API key", code="invalid_api_key")
        return principal
