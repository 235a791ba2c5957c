"""API-key authentication from a key file that maps keys to principals.

The file (``HEADWATER_API_KEYS_FILE``) is JSON::

    {"keys": [
      {"key_sha256": "<hex sha256 of the key>", "tenant": "acme",
       "user_id": "alice@acme.com", "groups": ["hr"], "department": "hr"},
      {"key": "dev-only-plain-key", "tenant": "acme", "user_id": "bob@acme.com"}
    ]}

``key_sha256`` is the form to use anywhere but a laptop: the file then holds no
secret. ``headwater keys create|list|revoke`` manage it (a created key is shown once).
Keys are looked up by their SHA-256, so a presented key is never compared character
by character. The authenticator re-reads the file when it changes, so a revoked key
fails on its next use.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from acl.models import Principal
from core.errors import Unauthenticated

_log = logging.getLogger(__name__)


class Authenticator(Protocol):
    """Turns a bearer credential into a principal, or raises ``Unauthenticated``."""

    def authenticate(self, credential: str) -> Principal: ...


class KeyEntry(BaseModel):
    """One key of the key file (the key itself, or only its SHA-256)."""

    model_config = ConfigDict(extra="forbid")

    key: str | None = None
    key_sha256: str | None = None
    tenant: str
    user_id: str
    groups: list[str] = []
    department: str | None = None
    roles: list[str] = []
    created_at: str | None = None
    revoked_at: str | None = None

    @model_validator(mode="after")
    def _one_key(self) -> KeyEntry:
        if (self.key is None) == (self.key_sha256 is None):
            raise ValueError("each entry needs exactly one of 'key' or 'key_sha256'")
        return self

    def digest(self) -> str:
        return self.key_sha256.lower() if self.key_sha256 else hash_key(self.key or "")

    @property
    def key_id(self) -> str:
        """A public handle for listing and revoking: the digest's first 12 hex digits."""
        return self.digest()[:12]

    def principal(self) -> Principal:
        return Principal(
            tenant=self.tenant,
            user_id=self.user_id,
            groups=tuple(self.groups),
            department=self.department,
            roles=tuple(self.roles),
            key_id=self.key_id,
        )


class _KeyFile(BaseModel):
    keys: list[KeyEntry]


def hash_key(key: str) -> str:
    """The SHA-256 hex digest under which a key is stored."""
    return hashlib.sha256(key.encode()).hexdigest()


def read_key_file(path: Path) -> list[KeyEntry]:
    try:
        return _KeyFile.model_validate(json.loads(path.read_text())).keys
    except FileNotFoundError as exc:
        raise ValueError(f"API key file {path} not found; set HEADWATER_API_KEYS_FILE") from exc
    except (json.JSONDecodeError, ValidationError) as exc:
        raise ValueError(f"API key file {path} is not valid: {exc}") from exc


class ApiKeyAuthenticator:
    """Authenticates the unrevoked keys of a key file, re-read whenever it changes."""

    def __init__(self, path: Path):
        self._path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._by_digest = self._load(read_key_file(path))
        self._stamp = self._stat()

    @classmethod
    def from_file(cls, path: Path) -> ApiKeyAuthenticator:
        return cls(path)

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            stat = self._path.stat()
        except FileNotFoundError:
            return None
        return (stat.st_ino, stat.st_mtime_ns, stat.st_size)

    @staticmethod
    def _load(entries: list[KeyEntry]) -> dict[str, Principal]:
        return {entry.digest(): entry.principal() for entry in entries if not entry.revoked_at}

    def _reload(self) -> None:
        stamp = self._stat()
        if stamp == self._stamp:
            return
        try:
            # A key file that disappeared admits nobody; one that does not parse keeps
            # the last good keys (key files are replaced atomically by KeyStore).
            keys = self._load(read_key_file(self._path)) if stamp else {}
        except ValueError:
            _log.exception("API key file %s is not valid; keeping the previous keys", self._path)
            return
        with self._lock:
            self._by_digest, self._stamp = keys, stamp

    def authenticate(self, credential: str) -> Principal:
        self._reload()
        principal = self._by_digest.get(hash_key(credential))
        if principal is None:
            raise Unauthenticated("invalid API key", code="invalid_api_key")
        return principal


def new_key(principal: Principal) -> tuple[str, KeyEntry]:
    """A new random key for ``principal`` and its entry (which holds only the SHA-256)."""
    key = "hw_" + secrets.token_urlsafe(32)
    entry = KeyEntry(
        key_sha256=hash_key(key),
        tenant=principal.tenant,
        user_id=principal.user_id,
        groups=list(principal.groups),
        department=principal.department,
        roles=list(principal.roles),
        created_at=datetime.now(UTC).isoformat(),
    )
    return key, entry


class KeyRegistry(Protocol):
    """Where keys are managed: the key file (development) or the keys topic."""

    def entries(self) -> list[KeyEntry]: ...

    def create(self, principal: Principal) -> tuple[str, KeyEntry]: ...

    def revoke(self, key_id: str) -> KeyEntry: ...


class KeyStore:
    """Creates, lists and revokes keys in a key file (atomic rewrites)."""

    def __init__(self, path: Path):
        self._path = path

    def entries(self) -> list[KeyEntry]:
        return read_key_file(self._path) if self._path.exists() else []

    def create(self, principal: Principal) -> tuple[str, KeyEntry]:
        """A new random key for ``principal``; only its SHA-256 is stored."""
        key, entry = new_key(principal)
        self._write([*self.entries(), entry])
        return key, entry

    def revoke(self, key_id: str) -> KeyEntry:
        entries = self.entries()
        matches = [entry for entry in entries if entry.key_id == key_id]
        if len(matches) != 1:
            raise KeyError(f"no key with id {key_id!r}")
        matches[0].revoked_at = datetime.now(UTC).isoformat()
        self._write(entries)
        return matches[0]

    def _write(self, entries: list[KeyEntry]) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_suffix(".tmp")
        body = {"keys": [entry.model_dump(exclude_none=True) for entry in entries]}
        tmp.write_text(json.dumps(body, indent=2) + "\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, self._path)
