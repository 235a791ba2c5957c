"""``headwater topics migrate`` on a deployment written before compaction: a documents topic
with ``cleanup.policy=delete`` and ACL changes keyed by their document. It re-seals what
compaction would otherwise strip of its text, then sets the documented configs."""

from __future__ import annotations

import json
import uuid

import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from typer.testing import CliRunner

from core.kafka import KafkaProducer, ensure_topics, migrate_topics, read_to_end
from core.settings import Settings
from headwater.cli import app as cli

pytestmark = pytest.mark.integration


def _event(doc_id: str, op: str, version: int, **fields: object) -> bytes:
    event = {"op": op, "tenant": "acme", "doc_id": doc_id, "version": version, **fields}
    return json.dumps(event).encode()


def test_migrate_reseals_legacy_acl_tails_then_compacts(kafka_bootstrap: str) -> None:
    run = uuid.uuid4().hex[:8]
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        documents_topic=f"migrate-{run}.documents",
        dlq_topic=f"migrate-{run}.documents.dlq",
        audit_topic=f"migrate-{run}.audit",
        principals_topic=f"migrate-{run}.principals",
        keys_topic=f"migrate-{run}.keys",
        topic_partitions=1,
    )
    env = {
        f"HEADWATER_{name.upper()}": str(getattr(settings, name))
        for name in ("kafka_bootstrap", "documents_topic", "dlq_topic", "audit_topic")
        + ("principals_topic", "keys_topic")
    }
    # As 'headwater topics' created them before: delete policy, a week's retention.
    old = {"cleanup.policy": "delete", "retention.ms": "604800000"}
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.create_topics(
        [NewTopic(t, 1, 1, config=old) for t in (settings.documents_topic, settings.dlq_topic)]
    ).values():
        future.result(30)
    ensure_topics(settings)  # the other three, as they are now
    producer = KafkaProducer(kafka_bootstrap)
    topic = settings.documents_topic
    acl = {"groups": ["eng"]}
    producer.send(topic, key=b"acme/a", value=_event("a", "upsert", 1, text="Alpha text."))
    producer.send(topic, key=b"acme/a", value=_event("a", "acl", 2, acl=acl))  # legacy key
    producer.send(topic, key=b"acme/b", value=_event("b", "upsert", 1, text="Beta text."))
    producer.send(topic, key=b"acme/c", value=_event("c", "acl", 3, acl=acl))  # no upsert
    producer.close()
    runner = CliRunner()

    dry = runner.invoke(cli, ["topics", "migrate", "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    assert "1 document(s) to re-seal" in dry.output and "acme/c" in dry.output
    assert "cleanup.policy" in dry.output and "dry run" in dry.output
    assert len(list(read_to_end(kafka_bootstrap, topic=topic))) == 4, "a dry run writes nothing"

    done = runner.invoke(cli, ["topics", "migrate"], env=env)
    assert done.exit_code == 0, done.output
    assert "1 document(s) re-sealed" in done.output
    assert migrate_topics(settings, apply=False) == []
    records = list(read_to_end(kafka_bootstrap, topic=topic))
    assert [(r.key, r.value) for r in records[4:]] == [
        (b"acme/a", _event("a", "upsert", 1, text="Alpha text.")),
        (b"acl acme/a", _event("a", "acl", 2, acl=acl)),
    ]

    again = runner.invoke(cli, ["topics", "migrate"], env=env)
    assert again.exit_code == 0, again.output
    assert "every existing topic has its documented config" in again.output
    assert len(list(read_to_end(kafka_bootstrap, topic=topic))) == 6
