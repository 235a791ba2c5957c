"""Who may do what, by role: one dependency, ``require_role``, for every guarded route.

Roles come with the credential (an API key's entry, an OIDC token's roles claim). A
route guarded here answers 403 ``missing_role`` to an authenticated caller without one
of its roles, and still 401 to one without valid credentials.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends

from acl.models import Principal
from api.deps import get_principal
from core.errors import PermissionDenied

ADMIN = "admin"
BILLING = "billing"
AUDITOR = "auditor"
CONNECTOR = "connector"


def check_role(principal: Principal, *roles: str, doing: str = "this") -> Principal:
    """``principal`` if it holds one of ``roles``; else 403 ``missing_role`` saying that
    ``doing`` needs them (for a check that depends on the request, e.g. ``erase=true``)."""
    if not set(roles) & set(principal.roles):
        names = " or ".join(f"'{role}'" for role in roles)
        raise PermissionDenied(
            f"{doing} needs the {names} role on the credential", code="missing_role"
        )
    return principal


def require_role(*roles: str, doing: str = "this") -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency: the caller (``get_principal``, itself a dependency, so a test's
    override of it applies), if it holds one of ``roles``."""

    async def guarded(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        return check_role(principal, *roles, doing=doing)

    return guarded


AdminDep = Annotated[Principal, Depends(require_role(ADMIN))]
KeyAdminDep = Annotated[Principal, Depends(require_role(ADMIN, doing="managing keys"))]
BillingDep = Annotated[Principal, Depends(require_role(ADMIN, BILLING, doing="the usage report"))]
ConnectorDep = Annotated[Principal, Depends(require_role(CONNECTOR, doing="writing documents"))]
AuditorDep = Annotated[Principal, Depends(require_role(ADMIN, AUDITOR))]
