from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from acl.filter import MatchAny, PermissionFilter, RequestFilter, document_access_keys
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


# Names built from separators and the key kinds' own words, where forgeries would hide.
_pieces = st.sampled_from(["a", "b", "/", ",", '"', "[", "]", "\\", "user", "group", "public"])
_names = st.lists(_pieces, min_size=1, max_size=3).map("".join)


@given(
    doc_tenant=_names,
    acl=st.builds(
        DocumentAcl,
        users=st.lists(_names, max_size=3).map(tuple),
        groups=st.lists(_names, max_size=3).map(tuple),
        public=st.booleans(),
    ),
    principal=st.builds(
        Principal, tenant=_names, user_id=_names, groups=st.lists(_names, max_size=3).map(tuple)
    ),
)
def test_access_keys_meet_exactly_when_the_permission_rule_allows(
    doc_tenant: str, acl: DocumentAcl, principal: Principal
) -> None:
    """The store matches access keys; they must say what the written rule says: same
    tenant, and public, or the user listed, or a shared group. Names full of separators
    cannot forge a key of another tenant, user or group."""
    granted = set(document_access_keys(doc_tenant, acl))
    held = set(PermissionFilter.for_principal(principal).access_keys)
    assert bool(granted & held) == (doc_tenant == principal.tenant and acl.allows(principal))


@pytest.mark.parametrize(
    ("doc_tenant", "acl", "principal"),
    [  # each would meet if keys were names joined by a separator
        ("a/user", DocumentAcl(public=True), Principal(tenant="a", user_id="public")),
        ("a", DocumentAcl(groups=("x/user/y",)), Principal(tenant="a/group/x", user_id="y")),
        ("a", DocumentAcl(users=('b","c',)), Principal(tenant="a", user_id="b", groups=("c",))),
    ],
)
def test_access_keys_cannot_be_forged_by_separators_in_names(
    doc_tenant: str, acl: DocumentAcl, principal: Principal
) -> None:
    granted = set(document_access_keys(doc_tenant, acl))
    assert not granted & set(PermissionFilter.for_principal(principal).access_keys)
