"""The group directory: who belongs to which groups, fed by ``headwater.principals.v1``.

Policy between credentials and the directory (documented in README):
- A user the directory knows gets the directory's groups; the groups claimed by the
  API key or JWT are ignored, so a membership change applies to the next request
  without re-issuing credentials or re-indexing anything.
- A user the directory marks ``disabled``, or removed (a null record), is refused.
- A user the directory has never heard of keeps the groups of their credential.

It fails closed. A malformed record (not JSON, groups not a list of strings) is counted
and turns its user into a refused one until a valid record for that user arrives: it
never leaves an older, wider membership in force. And the directory is only as good as
its follower: until the follower has first read the whole topic, every user is refused
with 503 (nobody can tell yet whom it knows); once the follower falls behind by more
than ``max_staleness_s`` (or stops), users it knows get 503 rather than stale groups.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass

from acl.models import Principal
from core.errors import Unauthenticated, UpstreamUnavailable
from core.metrics import FOLLOWER_ERRORS

Staleness = Callable[[], float | None]


@dataclass(frozen=True)
class Membership:
    groups: tuple[str, ...]
    disabled: bool = False


class DirectoryUnavailable(UpstreamUnavailable):
    """The directory cannot vouch for a user's groups now (its follower is behind)."""

    retry_after_s = 5

    def __init__(self) -> None:
        super().__init__(
            "the group directory is not up to date; retry shortly",
            code="directory_unavailable",
        )


def _membership(value: bytes) -> Membership:
    """A principals record's value; ``ValueError`` when it is not the documented shape."""
    body = json.loads(value)
    if not isinstance(body, dict):
        raise ValueError("not an object")
    groups, disabled = body.get("groups", []), body.get("disabled", False)
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise ValueError("groups is not a list of strings")
    if not isinstance(disabled, bool):
        raise ValueError("disabled is not a boolean")
    return Membership(groups=tuple(sorted(set(groups))), disabled=disabled)


class GroupDirectory:
    """An in-memory view of the compacted principals topic (thread-safe).

    ``staleness`` reports how long ago the view was last complete (the follower's
    ``staleness_s``); without it (tests, tools) the view counts as always complete.
    """

    def __init__(
        self,
        *,
        staleness: Staleness | None = None,
        max_staleness_s: float = 30.0,
        topic: str = "headwater.principals.v1",
    ) -> None:
        self._topic = topic  # for the error counter's label
        self._lock = threading.Lock()
        self._members: dict[tuple[str, str], Membership] = {}
        self._staleness = staleness
        self._max_staleness_s = max_staleness_s

    def follow(self, staleness: Staleness) -> None:
        """Judge freshness by ``staleness`` from now on (the follower that feeds it)."""
        self._staleness = staleness

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """One record of ``headwater.principals.v1``: key ``{tenant}/{user_id}``; value
        ``{"groups": [...], "disabled": false}``, or null when the user is removed."""
        if not key or b"/" not in key:
            FOLLOWER_ERRORS.labels(self._topic, "invalid").inc()
            return
        tenant, _, user_id = key.decode("utf-8", "replace").partition("/")
        if value is None:
            membership = Membership(groups=(), disabled=True)
        else:
            try:
                membership = _membership(value)
            except ValueError:  # json.JSONDecodeError and UnicodeDecodeError included
                FOLLOWER_ERRORS.labels(self._topic, "invalid").inc()
                membership = Membership(groups=(), disabled=True)  # fail closed
        with self._lock:
            self._members[(tenant, user_id)] = membership

    def ready(self) -> bool:
        """Whether the view is complete enough to serve (``/readyz``)."""
        if self._staleness is None:
            return True
        staleness = self._staleness()
        return staleness is not None and staleness <= self._max_staleness_s

    def resolve(self, principal: Principal) -> Principal:
        """The principal with the directory's groups (see the module docstring)."""
        with self._lock:
            membership = self._members.get((principal.tenant, principal.user_id))
        if not self.ready():
            staleness = self._staleness() if self._staleness else None
            if membership is not None or staleness is None:
                raise DirectoryUnavailable()
        if membership is None:
            return principal
        if membership.disabled:
            raise Unauthenticated("this account is disabled", code="account_disabled")
        return principal.model_copy(update={"groups": membership.groups})
