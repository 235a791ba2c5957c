"""Topic admin and consumer lag."""

from __future__ import annotations

import logging

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

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


def ensure_topics(settings: Settings, *, timeout_s: float = 30.0) -> list[str]:
    """Create the topics of ARCHITECTURE.md that do not exist yet; returns those created."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    wanted = {
        settings.documents_topic: {"retention.ms": str(settings.documents_retention_ms)},
        settings.dlq_topic: {"retention.ms": str(settings.dlq_retention_ms)},
        settings.principals_topic: {"cleanup.policy": "compact"},
        settings.keys_topic: {"cleanup.policy": "compact"},
        settings.audit_topic: {"retention.ms": str(settings.audit_retention_ms)},
    }
    try:
        existing = set(admin.list_topics(timeout=timeout_s).topics)
    except KafkaException as exc:
        raise UpstreamUnavailable(
            f"Kafka at {settings.kafka_bootstrap} is not reachable: {exc}"
        ) from exc
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
