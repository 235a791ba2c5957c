"""API keys for any number of API replicas: a compacted topic every process follows.

``headwater.keys.v1``: key ``{tenant}/{key_id}``, value a :class:`~acl.keys.KeyEntry`
holding only the key's SHA-256 and its principal (never a key), with ``revoked_at`` once
revoked; null deletes it. Every API process follows the topic (as it follows the group
directory) and authenticates against its view; the admin API and ``headwater keys``
write there. A key created through one replica works there at once (the writer applies
its own record) and on the others as soon as their followers read it; a revocation
likewise, within the followers' lag (BENCHMARKS.md measures it).

It fails closed like the directory: until its follower has first read the whole topic,
and whenever it has fallen behind by more than ``max_staleness_s`` (or stopped), keys
are refused with 503 rather than judged by a view that may miss a revocation.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from pydantic import ValidationError

from acl.directory import Staleness
from acl.keys import KeyEntry, hash_key, new_key
from acl.models import Principal
from core.errors import Unauthenticated, UpstreamUnavailable
from core.metrics import FOLLOWER_ERRORS

_log = logging.getLogger(__name__)

Publish = Callable[[bytes, bytes | None], None]
"""Sends one record (key, value) to the keys topic and returns once it is acknowledged."""


class KeysUnavailable(UpstreamUnavailable):
    retry_after_s = 5

    def __init__(self) -> None:
        super().__init__(
            "the key registry is not up to date; retry shortly", code="keys_unavailable"
        )


def record_key(entry: KeyEntry) -> bytes:
    return f"{entry.tenant}/{entry.key_id}".encode()


class TopicKeyStore:
    """Authenticates against, and manages, the keys on the keys topic (thread-safe)."""

    def __init__(
        self,
        *,
        publish: Publish | None = None,
        staleness: Staleness | None = None,
        max_staleness_s: float = 30.0,
        topic: str = "headwater.keys.v1",
    ):
        self._publish = publish
        self._staleness = staleness
        self._max_staleness_s = max_staleness_s
        self._topic = topic
        self._lock = threading.Lock()
        self._entries: dict[str, KeyEntry] = {}  # by key_id

    def follow(self, staleness: Staleness) -> None:
        self._staleness = staleness

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """One record of the keys topic (idempotent; the latest record of a key wins)."""
        if not key or b"/" not in key:
            FOLLOWER_ERRORS.labels(self._topic, "invalid").inc()
            return
        key_id = key.decode("utf-8", "replace").partition("/")[2]
        if value is None:
            with self._lock:
                self._entries.pop(key_id, None)
            return
        try:
            entry = KeyEntry.model_validate_json(value)
            if entry.key is not None or entry.key_id != key_id:
                raise ValueError("a key record holds a hash only, under its own id")
        except (ValidationError, ValueError):
            FOLLOWER_ERRORS.labels(self._topic, "invalid").inc()
            # Fail closed: a record we cannot read revokes whatever it was about.
            with self._lock:
                self._entries.pop(key_id, None)
            return
        with self._lock:
            self._entries[key_id] = entry

    def ready(self) -> bool:
        if self._staleness is None:
            return True
        staleness = self._staleness()
        return staleness is not None and staleness <= self._max_staleness_s

    def authenticate(self, credential: str) -> Principal:
        if not self.ready():
            raise KeysUnavailable()
        digest = hash_key(credential)
        with self._lock:
            entry = self._entries.get(digest[:12])
        if entry is None or entry.revoked_at or entry.digest() != digest:
            raise Unauthenticated("invalid API key", code="invalid_api_key")
        return entry.principal()

    def entries(self) -> list[KeyEntry]:
        with self._lock:
            return list(self._entries.values())

    def create(self, principal: Principal) -> tuple[str, KeyEntry]:
        """A new random key for ``principal``; only its SHA-256 goes to the topic."""
        key, entry = new_key(principal)
        self._write(entry)
        return key, entry

    def revoke(self, key_id: str) -> KeyEntry:
        with self._lock:
            entry = self._entries.get(key_id)
        if entry is None:
            raise KeyError(f"no key with id {key_id!r}")
        revoked = entry.model_copy(update={"revoked_at": datetime.now(UTC).isoformat()})
        self._write(revoked)
        return revoked

    def _write(self, entry: KeyEntry) -> None:
        if self._publish is None:
            raise RuntimeError("this key store is read-only (no producer)")
        self._publish(record_key(entry), entry.model_dump_json(exclude_none=True).encode())
        self.apply(record_key(entry), entry.model_dump_json(exclude_none=True).encode())
