from __future__ import annotations

import pytest

from acl.filter import MatchAny, PermissionFilter, RequestFilter
from acl.models import DocumentAcl, Principal
from core.errors import InvalidRequest

ALICE = Principal(tenant="acme", user_id="alice@acme.com", groups=("hr", "staff"))


def test_filter_carries_tenant_user_and_groups_of_the_principal() -> None:
    permission = PermissionFilter.for_principal(ALICE)
    assert permission.tenant == "acme"
    assert permission.user_id == "alice@acme.com"
    assert permission.groups == ("hr", "staff")
    assert permission.narrowing == ()


def test_request_filter_only_adds_must_conditions() -> None:
    request = RequestFilter(source=["wiki", "drive"], metadata={"department": "hr"})
    permission = PermissionFilter.for_principal(ALICE, request)
    assert permission.tenant == "acme" and permission.groups == ALICE.groups
    assert permission.narrowing == (
        MatchAny("source", ("wiki", "drive")),
        MatchAny("metadata.department", ("hr",)),
    )


def test_request_filter_cannot_name_acl_or_tenant_keys() -> None:
    with pytest.raises(ValueError, match="acl_groups"):
        RequestFilter.model_validate({"acl_groups": ["hr"]})
    with pytest.raises(ValueError, match="tenant"):
        RequestFilter.model_validate({"tenant": "other"})


def test_metadata_keys_cannot_escape_the_metadata_object() -> None:
    with pytest.raises(InvalidRequest):
        PermissionFilter.for_principal(ALICE, RequestFilter(metadata={"x.acl_public": True}))


@pytest.mark.parametrize(
    ("acl", "expected"),
    [
        (DocumentAcl(), False),
        (DocumentAcl(public=True), True),
        (DocumentAcl(users=("alice@acme.com",)), True),
        (DocumentAcl(groups=("staff",)), True),
        (DocumentAcl(groups=("finance",), users=("bob@acme.com",)), False),
    ],
)
def test_document_acl_denies_by_default(acl: DocumentAcl, expected: bool) -> None:
    assert acl.allows(ALICE) is expected
