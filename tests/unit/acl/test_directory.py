from __future__ import annotations

import pytest

from acl.directory import DirectoryUnavailable, GroupDirectory
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


def _errors() -> float:
    from core.metrics import FOLLOWER_ERRORS

    return FOLLOWER_ERRORS.labels("headwater.principals.v1", "invalid")._value.get()


@pytest.mark.parametrize(
    "bad",
    [b"{not json", b'["hr"]', b'{"groups": "hr"}', b'{"groups": [1]}', b'{"disabled": "no"}'],
)
def test_a_malformed_record_is_counted_and_fails_closed_for_its_user(bad: bytes) -> None:
    directory = GroupDirectory()
    directory.apply(b"acme/alice", b'{"groups": ["hr"]}')
    before = _errors()
    directory.apply(b"acme/alice", bad)  # never raises: the follower goes on
    assert _errors() == before + 1
    with pytest.raises(Unauthenticated):
        directory.resolve(ALICE)  # not the older, wider membership
    directory.apply(b"acme/alice", b'{"groups": ["staff"]}')
    assert directory.resolve(ALICE).groups == ("staff",)


def test_a_record_with_no_user_in_its_key_is_counted_and_skipped() -> None:
    directory = GroupDirectory()
    before = _errors()
    directory.apply(b"no-slash", b'{"groups": ["hr"]}')
    directory.apply(None, b'{"groups": ["hr"]}')
    assert _errors() == before + 2 and directory.resolve(ALICE) == ALICE


def test_before_its_follower_first_caught_up_everyone_is_refused_with_503() -> None:
    directory = GroupDirectory(staleness=lambda: None)
    assert not directory.ready()
    with pytest.raises(DirectoryUnavailable) as refused:
        directory.resolve(ALICE)
    assert refused.value.status_code == 503 and refused.value.retry_after_s


def test_a_stale_directory_refuses_the_users_it_knows_and_keeps_the_others() -> None:
    staleness = [1.0]
    directory = GroupDirectory(staleness=lambda: staleness[0], max_staleness_s=30)
    directory.apply(b"acme/alice", b'{"groups": ["hr"]}')
    assert directory.ready() and directory.resolve(ALICE).groups == ("hr",)
    staleness[0] = 31.0
    assert not directory.ready()
    with pytest.raises(DirectoryUnavailable):
        directory.resolve(ALICE)  # never her stale groups
    bob = Principal(tenant="acme", user_id="bob", groups=("eng",))
    assert directory.resolve(bob) == bob
