"""The topic configs ``headwater topics`` creates and ``headwater topics migrate`` sets."""

from __future__ import annotations

from core.kafka import topic_configs
from core.settings import Settings


def test_the_documents_topic_is_compacted_and_keeps_every_document_by_default() -> None:
    settings = Settings()
    configs = topic_configs(settings)
    documents = configs[settings.documents_topic]
    assert documents["cleanup.policy"] == "compact"
    assert "retention.ms" not in documents
    # The erasure bound: segments close, and superseded records go, within these.
    assert documents["segment.ms"] == "3600000"
    assert documents["max.compaction.lag.ms"] == "86400000"
    assert documents["delete.retention.ms"] == "86400000"
    assert documents["min.compaction.lag.ms"] == "0"
    assert documents["file.delete.delay.ms"] == "60000"


def test_the_dead_letter_topic_is_compacted_and_expires() -> None:
    settings = Settings()
    dlq = topic_configs(settings)[settings.dlq_topic]
    assert dlq["cleanup.policy"] == "compact,delete"
    assert dlq["retention.ms"] == str(settings.dlq_retention_ms)
    assert dlq["max.compaction.lag.ms"] == str(settings.documents_max_compaction_lag_ms)


def test_a_retention_adds_time_based_deletion_to_the_documents_topic() -> None:
    settings = Settings(documents_retention_ms=3_600_000, documents_segment_ms=1000)
    documents = topic_configs(settings)[settings.documents_topic]
    assert documents["cleanup.policy"] == "compact,delete"
    assert documents["retention.ms"] == "3600000"
    assert documents["segment.ms"] == "1000"


def test_the_other_topics_keep_their_configs() -> None:
    settings = Settings()
    configs = topic_configs(settings)
    assert configs[settings.principals_topic] == {"cleanup.policy": "compact"}
    assert configs[settings.keys_topic] == {"cleanup.policy": "compact"}
    assert configs[settings.audit_topic] == {"retention.ms": str(settings.audit_retention_ms)}
