"""Who may do what, by role: one dependency, ``require_role``, for every guarded route.

Roles come with the credential (an API key's entry, an OIDC token's roles claim). A
route guarded here answers 403 ``missing_role`` to an authenticated caller without one
of its roles, and still 401 to one without valid credentials.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request

from acl.models import Principal
from api.deps import get_principal
from core.errors import PermissionDenied

ADMIN = "admin"
BILLING = "billing"
AUDITOR = "auditor"


def require_role(*roles: str) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency: the caller (``get_principal``), if it holds one of ``roles``."""
    wanted = frozenset(roles)
    names = " or ".join(f"'{role}'" for role in roles)

    async def guarded(request: Request) -> Principal:
        principal = await get_principal(request)
        if not wanted & set(principal.roles):
            raise PermissionDenied(f"this needs the {names} role", code="missing_role")
        return principal

    return guarded


AdminDep = Annotated[Principal, Depends(require_role(ADMIN))]
AuditorDep = Annotated[Principal, Depends(require_role(ADMIN, AUDITOR))]
