"""Topic admin (create, migrate the configs of existing topics) and consumer lag."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from core.errors import UpstreamUnavailable
from core.settings import Settings

_log = logging.getLogger(__name__)


class ConsumerLag:
    """Reads ``group``'s lag on ``topic`` through one long-lived consumer that never joins
    the group (a reporter that polls every few seconds keeps one connection, not one per
    reading). Not for concurrent use."""

    def __init__(self, bootstrap: str, *, group: str, topic: str):
        self._topic = topic
        self._consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
        )

    def read(self, timeout_s: float = 5.0) -> dict[int, int]:
        """Messages not yet committed by the group, per partition."""
        topic = self._topic
        try:
            metadata = self._consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
            if metadata is None or metadata.error is not None:
                return {}
            partitions = [TopicPartition(topic, p) for p in sorted(metadata.partitions)]
            lag: dict[int, int] = {}
            for position in self._consumer.committed(partitions, timeout=timeout_s):
                low, high = self._consumer.get_watermark_offsets(position, timeout=timeout_s)
                start = position.offset if position.offset >= 0 else low
                lag[position.partition] = max(0, high - start)
            return lag
        except KafkaException as exc:
            raise UpstreamUnavailable(f"cannot read consumer lag: {exc}") from exc

    def close(self) -> None:
        self._consumer.close()


def consumer_lag(
    bootstrap: str, *, group: str, topic: str, timeout_s: float = 5.0
) -> dict[int, int]:
    """Messages not yet committed by ``group``, per partition of ``topic`` (one reading)."""
    probe = ConsumerLag(bootstrap, group=group, topic=topic)
    try:
        return probe.read(timeout_s)
    finally:
        probe.close()


def topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """The config of every topic of ARCHITECTURE.md, as ``headwater topics`` creates it.

    The documents topic is compacted by ``{tenant}/{doc_id}``: it holds the latest state
    of every document, and a tombstone removes one for good. The dead-letter topic is
    compacted too (keyed by the document, so an erasure's tombstone reaches its dead
    letters) and deletes after its retention. ``segment.ms``, ``max.compaction.lag.ms``
    and ``file.delete.delay.ms`` bound how long a superseded record stays on disk
    (docs/operating.md, "Erasure").
    """
    compaction = {
        "segment.ms": str(settings.documents_segment_ms),
        "max.compaction.lag.ms": str(settings.documents_max_compaction_lag_ms),
        "delete.retention.ms": str(settings.documents_tombstone_retention_ms),
        "min.compaction.lag.ms": "0",
        "file.delete.delay.ms": str(FILE_DELETE_DELAY_MS),
    }
    documents = {"cleanup.policy": "compact", **compaction}
    if settings.documents_retention_ms >= 0:
        documents |= {
            "cleanup.policy": "compact,delete",
            "retention.ms": str(settings.documents_retention_ms),
        }
    return {
        settings.documents_topic: documents,
        settings.dlq_topic: {
            "cleanup.policy": "compact,delete",
            "retention.ms": str(settings.dlq_retention_ms),
            **compaction,
        },
        settings.principals_topic: {"cleanup.policy": "compact"},
        settings.keys_topic: {"cleanup.policy": "compact"},
        settings.audit_topic: {"retention.ms": str(settings.audit_retention_ms)},
    }


# Kafka's default: a cleaned-away segment file lingers this long (renamed *.deleted).
FILE_DELETE_DELAY_MS = 60_000


def _admin(settings: Settings) -> AdminClient:
    return AdminClient({"bootstrap.servers": settings.kafka_bootstrap})


def _existing(admin: AdminClient, settings: Settings, timeout_s: float) -> set[str]:
    try:
        return set(admin.list_topics(timeout=timeout_s).topics)
    except KafkaException as exc:
        raise UpstreamUnavailable(
            f"Kafka at {settings.kafka_bootstrap} is not reachable: {exc}"
        ) from exc


def ensure_topics(
    settings: Settings,
    *,
    timeout_s: float = 30.0,
    extra_config: Mapping[str, str] | None = None,
) -> list[str]:
    """Create the topics of ARCHITECTURE.md that do not exist yet; returns those created.

    ``extra_config`` adds topic configs to the documents and dead-letter topics (tests
    that force compaction). An existing topic is left as it is: see :func:`migrate_topics`.
    """
    admin = _admin(settings)
    wanted = topic_configs(settings)
    for name in (settings.documents_topic, settings.dlq_topic):
        wanted[name] |= dict(extra_config or {})
    existing = _existing(admin, settings, timeout_s)
    _warn_of_drift(admin, wanted, existing, timeout_s)
    missing = [
        NewTopic(
            name,
            num_partitions=settings.topic_partitions,
            replication_factor=settings.topic_replication,
            config=config,
        )
        for name, config in wanted.items()
        if name not in existing
    ]
    created: list[str] = []
    for name, future in (admin.create_topics(missing) if missing else {}).items():
        try:
            future.result(timeout=timeout_s)
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    if created:
        _log.info("created topics %s", created)
    return created


@dataclass(frozen=True)
class ConfigChange:
    """One topic config that differs from what :func:`topic_configs` wants."""

    topic: str
    name: str
    current: str | None
    wanted: str


def migrate_topics(
    settings: Settings, *, apply: bool, timeout_s: float = 30.0
) -> list[ConfigChange]:
    """The configs of existing topics that differ from :func:`topic_configs`; with
    ``apply``, set them (incremental alter configs: other configs stay as they are).
    Topics that do not exist are left to :func:`ensure_topics`."""
    admin = _admin(settings)
    wanted = topic_configs(settings)
    present = _existing(admin, settings, timeout_s)
    try:
        changes = _changes(admin, wanted, present, timeout_s)
        if apply and changes:
            _alter(admin, changes, timeout_s)
    except KafkaException as exc:
        raise UpstreamUnavailable(f"cannot migrate the topic configs: {exc}") from exc
    return changes


def _changes(
    admin: AdminClient, wanted: dict[str, dict[str, str]], present: set[str], timeout_s: float
) -> list[ConfigChange]:
    resources = [ConfigResource(ResourceType.TOPIC, name) for name in wanted if name in present]
    changes: list[ConfigChange] = []
    for resource, future in (admin.describe_configs(resources) if resources else {}).items():
        current = future.result(timeout=timeout_s)
        for name, value in wanted[resource.name].items():
            entry = current.get(name)
            have = entry.value if entry is not None else None
            if have != value:
                changes.append(ConfigChange(resource.name, name, have, value))
    return changes


def _warn_of_drift(
    admin: AdminClient, wanted: dict[str, dict[str, str]], present: set[str], timeout_s: float
) -> None:
    """Log the existing topics whose configs differ from ours (an upgrade not migrated)."""
    try:
        changes = _changes(admin, wanted, present, timeout_s)
    except KafkaException as exc:  # a check, never a reason not to start
        _log.warning("could not read the topic configs: %s", exc)
        return
    for topic in sorted({change.topic for change in changes}):
        names = [f"{c.name}={c.current} (wanted {c.wanted})" for c in changes if c.topic == topic]
        _log.warning(
            "topic %s differs from its documented config: %s; run 'headwater topics migrate'",
            topic,
            ", ".join(names),
        )


def _alter(admin: AdminClient, changes: list[ConfigChange], timeout_s: float) -> None:
    by_topic: dict[str, list[ConfigEntry]] = {}
    for change in changes:
        by_topic.setdefault(change.topic, []).append(
            ConfigEntry(change.name, change.wanted, incremental_operation=AlterConfigOpType.SET)
        )
    resources = [
        ConfigResource(ResourceType.TOPIC, topic, incremental_configs=entries)
        for topic, entries in by_topic.items()
    ]
    for future in admin.incremental_alter_configs(resources).values():
        future.result(timeout=timeout_s)
    _log.info("migrated topic configs: %s", [(c.topic, c.name, c.wanted) for c in changes])
