"""api.roles.check_role: one refusal (403 missing_role) naming what needed which role."""

from __future__ import annotations

import pytest

from acl.models import Principal
from api.roles import ADMIN, CONNECTOR, check_role
from core.errors import PermissionDenied


def _caller(*roles: str) -> Principal:
    return Principal(tenant="acme", user_id="u@acme.com", roles=roles)


def test_a_caller_with_any_of_the_roles_passes() -> None:
    caller = _caller("billing", CONNECTOR)
    assert check_role(caller, CONNECTOR, ADMIN, doing="erasing documents") is caller


def test_a_caller_without_them_is_told_what_needs_which_role() -> None:
    with pytest.raises(PermissionDenied) as refused:
        check_role(_caller("billing"), CONNECTOR, ADMIN, doing="erasing documents")
    assert refused.value.code == "missing_role"
    assert str(refused.value) == (
        "erasing documents needs the 'connector' or 'admin' role on the credential"
    )


def test_no_roles_at_all_is_refused() -> None:
    with pytest.raises(PermissionDenied):
        check_role(_caller(), ADMIN)
