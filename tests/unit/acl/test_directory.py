from __future__ import annotations

import pytest

from acl.directory import GroupDirectory
from acl.models import Principal
from core.errors import Unauthenticated

ALICE = Principal(tenant="acme", user_id="alice", groups=("claimed",))


def test_unknown_users_keep_the_groups_of_their_credential() -> None:
    assert GroupDirectory().resolve(ALICE) == ALICE


def test_the_directory_replaces_claimed_groups_and_applies_changes_at_once() -> None:
    directory = GroupDirectory()
    directory.apply(b"acme/alice", b'{"groups": ["hr", "staff"]}')
    assert directory.resolve(ALICE).groups == ("hr", "staff")
    directory.apply(b"acme/alice", b'{"groups": ["staff"]}')
    assert directory.resolve(ALICE).groups == ("staff",)
    other_tenant = Principal(tenant="globex", user_id="alice", groups=("claimed",))
    assert directory.resolve(other_tenant).groups == ("claimed",)


def test_disabled_and_removed_users_are_refused() -> None:
    directory = GroupDirectory()
    directory.apply(b"acme/alice", b'{"groups": ["hr"], "disabled": true}')
    with pytest.raises(Unauthenticated):
        directory.resolve(ALICE)
    directory.apply(b"acme/alice", None)
    with pytest.raises(Unauthenticated):
        directory.resolve(ALICE)
