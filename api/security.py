"""Who may call the API, assembled from settings: API keys (the key file, or the keys
topic every replica follows), OIDC JWTs, and the group directory fed by its topic.

Both topic-fed views fail closed (``acl.directory``, ``acl.key_topic``): the API waits,
bounded, for their followers to read their topics before it serves, and refuses with
503 whenever a follower has fallen behind past ``HEADWATER_DIRECTORY_MAX_STALENESS_S``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass

from acl.directory import GroupDirectory
from acl.key_topic import TopicKeyStore
from acl.keys import ApiKeyAuthenticator, Authenticator, KeyRegistry, KeyStore
from acl.oidc import BearerAuthenticator, ClaimMapping, JwksKeys, JwtAuthenticator
from core.kafka import KafkaProducer, TopicFollower
from core.kafka.follower import OnRecord
from core.settings import Settings

_log = logging.getLogger(__name__)


@dataclass
class Keys:
    """Where keys are managed, and what authenticates them."""

    registry: KeyRegistry
    authenticator: Authenticator
    follower: TopicFollower | None = None


@contextmanager
def following(settings: Settings, topic: str, on_record: OnRecord) -> Iterator[TopicFollower]:
    """A follower of ``topic`` feeding ``on_record``, running while the context is open."""
    follower = TopicFollower(settings.kafka_bootstrap, topic=topic, on_record=on_record)
    follower.start()
    try:
        yield follower
    finally:
        follower.close()


@asynccontextmanager
async def open_keys(settings: Settings, producer: KafkaProducer) -> AsyncIterator[Keys]:
    """The key file (development) or the keys topic (any number of replicas)."""
    if settings.api_keys_source == "file":
        authenticator = ApiKeyAuthenticator.from_file(settings.api_keys_file)
        yield Keys(registry=KeyStore(settings.api_keys_file), authenticator=authenticator)
        return

    store = topic_key_store(settings, producer)
    with following(settings, settings.keys_topic, store.apply) as follower:
        store.follow(follower.staleness_s)
        await wait_until_ready(store.ready, settings.directory_max_staleness_s, "key registry")
        yield Keys(registry=store, authenticator=store, follower=follower)


def topic_key_store(settings: Settings, producer: KafkaProducer) -> TopicKeyStore:
    """The keys topic's view, writing through ``producer`` (each write acknowledged)."""

    def publish(key: bytes, value: bytes | None) -> None:
        producer.send(settings.keys_topic, key=key, value=value)

    return TopicKeyStore(
        publish=publish,
        max_staleness_s=settings.directory_max_staleness_s,
        topic=settings.keys_topic,
    )


def authenticator(settings: Settings, api_keys: Authenticator) -> Authenticator:
    """API keys, and OIDC JWTs when an issuer is configured."""
    if not settings.oidc_issuer:
        return api_keys
    oidc = JwtAuthenticator(
        issuer=settings.oidc_issuer,
        audience=settings.oidc_audience or "",
        keys=JwksKeys(url=settings.oidc_jwks_url, path=settings.oidc_jwks_file),
        algorithms=tuple(alg.strip() for alg in settings.oidc_algorithms.split(",") if alg.strip()),
        claims=ClaimMapping(
            user=settings.oidc_user_claim,
            groups=settings.oidc_groups_claim,
            tenant=settings.oidc_tenant_claim,
            department=settings.oidc_department_claim,
            roles=settings.oidc_roles_claim,
        ),
    )
    return BearerAuthenticator(api_keys=api_keys, oidc=oidc)


@asynccontextmanager
async def open_directory(settings: Settings) -> AsyncIterator[tuple[GroupDirectory, TopicFollower]]:
    """The group directory, following the principals topic; served once it caught up."""
    directory = GroupDirectory(
        max_staleness_s=settings.directory_max_staleness_s, topic=settings.principals_topic
    )
    with following(settings, settings.principals_topic, directory.apply) as follower:
        directory.follow(follower.staleness_s)
        await wait_until_ready(directory.ready, settings.directory_max_staleness_s, "directory")
        yield directory, follower


async def wait_until_ready(ready: Callable[[], bool], timeout_s: float, what: str) -> bool:
    """Wait (bounded) until ``ready``; past the bound, serve anyway: /readyz and the 503s
    then say why requests are refused."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            _log.warning("the %s has not caught up with its topic; requests get 503", what)
            return False
        await asyncio.sleep(0.05)
    return True
