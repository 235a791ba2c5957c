"""The group directory: who belongs to which groups, fed by ``headwater.principals.v1``.

Policy between credentials and the directory (documented in README):
- A user the directory knows gets the directory's groups; the groups claimed by the
  API key or JWT are ignored, so a membership change applies to the next request
  without re-issuing credentials or re-indexing anything.
- A user the directory marks ``disabled``, or removed (a null record), is refused.
- A user the directory has never heard of keeps the groups of their credential.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass

from acl.models import Principal
from core.errors import Unauthenticated


@dataclass(frozen=True)
class Membership:
    groups: tuple[str, ...]
    disabled: bool = False


class GroupDirectory:
    """An in-memory view of the compacted principals topic (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._members: dict[tuple[str, str], Membership] = {}

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """One record of ``headwater.principals.v1``: key ``{tenant}/{user_id}``; value
        ``{"groups": [...], "disabled": false}``, or null when the user is removed."""
        if not key or b"/" not in key:
            return
        tenant, _, user_id = key.decode().partition("/")
        if value is None:
            membership = Membership(groups=(), disabled=True)
        else:
            body = json.loads(value)
            membership = Membership(
                groups=tuple(sorted({str(group) for group in body.get("groups", [])})),
                disabled=bool(body.get("disabled", False)),
            )
        with self._lock:
            self._members[(tenant, user_id)] = membership

    def resolve(self, principal: Principal) -> Principal:
        """The principal with the directory's groups (see the module docstring)."""
        with self._lock:
            membership = self._members.get((principal.tenant, principal.user_id))
        if membership is None:
            return principal
        if membership.disabled:
            raise Unauthenticated("this account is disabled", code="account_disabled")
        return principal.model_copy(update={"groups": membership.groups})
