"""The lag reporter's probe on the real broker: one long-lived consumer reads a group's
lag per partition, again and again, without joining the group."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

from core.kafka import ConsumerLag, KafkaProducer, ensure_topics
from core.settings import Settings

pytestmark = pytest.mark.integration


def test_one_probe_reads_the_lag_of_a_group_that_has_committed_nothing(
    kafka_bootstrap: str,
) -> None:
    run = uuid.uuid4().hex[:8]
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap, documents_topic=f"test-{run}.documents", topic_partitions=3
    )
    ensure_topics(settings)
    probe = ConsumerLag(kafka_bootstrap, group=f"test-{run}", topic=settings.documents_topic)
    producer = KafkaProducer(kafka_bootstrap)
    try:
        assert probe.read() == {0: 0, 1: 0, 2: 0}
        landed = Counter(
            producer.send(settings.documents_topic, key=f"doc-{n}".encode(), value=b"{}").partition
            for n in range(12)
        )
        assert probe.read() == {p: landed[p] for p in range(3)}  # the same consumer again
    finally:
        producer.close()
        probe.close()
