"""The keys topic's view: keys created, revoked and deleted through records, failing
closed on a bad record or a stale follower. ``publish`` loops back into ``apply``, as the
follower would deliver the record."""

from __future__ import annotations

import json

import pytest

from acl.key_topic import KeysUnavailable, TopicKeyStore, record_key
from acl.keys import hash_key
from acl.models import Principal
from core.errors import Unauthenticated

ADMIN = Principal(tenant="acme", user_id="root@acme.com", roles=("admin",))


@pytest.fixture
def topic() -> list[tuple[bytes, bytes | None]]:
    return []


@pytest.fixture
def store(topic: list[tuple[bytes, bytes | None]]) -> TopicKeyStore:
    return TopicKeyStore(publish=lambda key, value: topic.append((key, value)))


def test_a_created_key_authenticates_and_its_record_holds_no_key(
    store: TopicKeyStore, topic: list[tuple[bytes, bytes | None]]
) -> None:
    key, entry = store.create(ADMIN)
    assert store.authenticate(key).roles == ("admin",)
    ((record_id, value),) = topic
    assert record_id == f"acme/{entry.key_id}".encode()
    assert value is not None and key.encode() not in value
    assert json.loads(value)["key_sha256"] == hash_key(key)


def test_another_replica_learns_keys_and_revocations_from_the_records(
    store: TopicKeyStore, topic: list[tuple[bytes, bytes | None]]
) -> None:
    key, entry = store.create(ADMIN)
    other = TopicKeyStore()
    for record in topic:
        other.apply(*record)
    assert other.authenticate(key).user_id == "root@acme.com"
    store.revoke(entry.key_id)
    other.apply(*topic[-1])
    with pytest.raises(Unauthenticated):
        other.authenticate(key)
    other.apply(record_key(entry), None)  # deleted
    assert other.entries() == []


@pytest.mark.parametrize(
    "value",
    [b"{oops", b'{"tenant": "acme"}', b'{"key": "plain", "tenant": "acme", "user_id": "u"}'],
)
def test_a_bad_record_revokes_what_it_was_about(store: TopicKeyStore, value: bytes) -> None:
    key, entry = store.create(ADMIN)
    store.apply(record_key(entry), value)
    with pytest.raises(Unauthenticated):
        store.authenticate(key)


def test_a_record_under_another_id_is_refused(store: TopicKeyStore) -> None:
    key, entry = store.create(ADMIN)
    forged = entry.model_copy(update={"roles": ["admin", "billing"]})
    store.apply(b"acme/000000000000", forged.model_dump_json().encode())
    assert store.authenticate(key).roles == ("admin",)
    assert {e.key_id for e in store.entries()} == {entry.key_id}


def test_a_stale_key_view_refuses_with_503() -> None:
    staleness: list[float | None] = [None]
    store = TopicKeyStore(publish=lambda *_: None, staleness=lambda: staleness[0])
    key, _ = store.create(ADMIN)
    with pytest.raises(KeysUnavailable):
        store.authenticate(key)  # never caught up yet
    staleness[0] = 0.5
    assert store.authenticate(key).user_id == "root@acme.com"
    staleness[0] = float("inf")  # its follower stopped
    with pytest.raises(KeysUnavailable):
        store.authenticate(key)


def test_an_unknown_key_is_refused(store: TopicKeyStore) -> None:
    with pytest.raises(Unauthenticated):
        store.authenticate("hw_not-a-key")
