"""Erasure, proven on disk: a document's canary text is gone from every Kafka log segment,
every file of the embedded store, every captured log line and every exported span, and
the other documents stay searchable. Then the compacted documents topic, replayed into
a new collection, rebuilds the same index (an ACL change as a document's last event
included).

Real parts only: a private Kafka broker (its data folder is grepped), the real embedding
model, and one Headwater process as ``headwater serve`` assembles it (API and ingest
worker over the embedded store). The topics get small compaction settings so that the
log cleaner runs within seconds; the documented ones bound it by a day.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from typer.testing import CliRunner

from core.kafka import KafkaProducer, ensure_topics, read_to_end
from core.settings import Settings
from deploy.stack import private_broker
from headwater.cli import app as cli
from headwater.clients import open_shared_clients
from headwater.processes import build_app, ingesting
from ingest.models import ErasureRecord
from retrieval.embedding import SentenceTransformerEmbedder
from retrieval.store import VectorStore

pytestmark = pytest.mark.integration

CONNECTOR, HR, ENG = "erasure-connector", "erasure-hr", "erasure-eng"
KEYS = [
    {"key": CONNECTOR, "tenant": "acme", "user_id": "wiki-connector", "roles": ["connector"]},
    {"key": HR, "tenant": "acme", "user_id": "hannah@acme.com", "groups": ["hr"]},
    {"key": ENG, "tenant": "acme", "user_id": "evan@acme.com", "groups": ["eng"]},
]
# Compaction within seconds: segments close after 1 s (the worker's seal appends to idle
# partitions every second), any dirt makes a log cleanable, superseded segment files go
# after 0.5 s. The broker's cleaner wakes every 15 s (log.cleaner.backoff.ms).
FAST_COMPACTION = {"min.cleanable.dirty.ratio": "0.01", "file.delete.delay.ms": "500"}


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("erasure-kafka")
    with private_broker(root) as bootstrap:
        yield bootstrap, root


@pytest.fixture(scope="module")
def settings(broker: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("erasure")
    keys = root / "keys.json"
    keys.write_text(json.dumps({"keys": KEYS}))
    settings = Settings(
        kafka_bootstrap=broker[0],
        data_dir=root / "data",
        api_keys_file=keys,
        consumer_group="erasure-serve",
        topic_partitions=2,
        documents_segment_ms=1000,
        documents_max_compaction_lag_ms=1000,
        documents_tombstone_retention_ms=1000,
        llm_small_url="http://127.0.0.1:9/v1",  # search only: no model is asked
    )
    ensure_topics(settings, extra_config=FAST_COMPACTION)
    return settings


def _canary() -> str:
    """Capitals that occur nowhere else: the embedded store compresses payloads (LZ4),
    and a run of four bytes seen before in the same payload would be stored as a
    back-reference, out of a byte-wise grep's sight (the test checks it is visible)."""
    return "QZX" + "".join(random.choices("GHJKMNPQRSTVWXYZ", k=24))


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _eventually(check: Callable[[], bool], what: str, timeout_s: float = 60) -> float:
    """Poll ``check``; the seconds it took, or fail naming ``what``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if check():
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {timeout_s}s")


def _found(client: TestClient, key: str, query: str) -> set[str]:
    response = client.post("/v1/search", json={"query": query, "top_k": 10}, headers=_auth(key))
    assert response.status_code == 200, response.text
    return {hit["doc_id"] for hit in response.json()["data"]}


def _files_holding(folder: Path, needle: bytes) -> list[Path]:
    """The files under ``folder`` that hold ``needle``; ``folder`` itself as well if a file
    vanished while it was read (a segment being replaced): the next look decides."""
    found: list[Path] = []
    for directory, _, names in os.walk(folder):
        for name in names:
            path = Path(directory) / name
            try:
                if needle in path.read_bytes():
                    found.append(path)
            except OSError:
                found.append(folder)
    return found


def _span_texts(spans: InMemorySpanExporter) -> Iterator[str]:
    for span in spans.get_finished_spans():
        yield span.name
        yield str(span.status.description)
        yield from (str(value) for value in (span.attributes or {}).values())
        for event in span.events:
            yield from (str(value) for value in (event.attributes or {}).values())
        for link in span.links:
            yield from (str(value) for value in (link.attributes or {}).values())


def _post(client: TestClient, doc_id: str, text: str, **fields: Any) -> None:
    body = {"doc_id": doc_id, "version": 1, "acl": {"groups": ["hr"]}, "text": text, **fields}
    response = client.post("/v1/documents", json=body, headers=_auth(CONNECTOR))
    assert response.status_code == 202, response.text


def test_an_erased_document_leaves_no_trace_and_the_others_stay(
    settings: Settings,
    broker: tuple[str, Path],
    embedder: SentenceTransformerEmbedder,
    spans: InMemorySpanExporter,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    canary = _canary()
    secret = f"The merger code name is {canary}; the board meets on Thursday in Oslo."
    env = {
        "HEADWATER_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "HEADWATER_DOCUMENTS_TOPIC": settings.documents_topic,
        "HEADWATER_DLQ_TOPIC": settings.dlq_topic,
        "HEADWATER_AUDIT_TOPIC": settings.audit_topic,
    }
    with TestClient(build_app(settings, embedder=embedder)) as client:
        _post(client, "merger-http", secret, title="Merger")
        _post(client, "merger-cli", f"Second copy. {secret}", title="Merger copy")
        _post(client, "parking", "Visitor parking is on level minus two, bay forty.")
        _post(client, "holidays", "Everyone gets twenty five days of paid holiday a year.")
        moved = client.put(
            "/v1/documents/holidays/acl",
            json={"version": 2, "acl": {"groups": ["eng"]}},
            headers=_auth(CONNECTOR),
        )
        assert moved.status_code == 202
        # A dead letter of the document, holding its text (a foreign producer's bad event).
        producer = KafkaProducer(settings.kafka_bootstrap)
        bad = {"op": "upsert", "tenant": "acme", "doc_id": "merger-http", "text": secret}
        producer.send(
            settings.documents_topic, key=b"acme/merger-http", value=json.dumps(bad).encode()
        )
        producer.close()
        _eventually(
            lambda: (
                {"merger-http", "merger-cli", "parking"}
                <= _found(client, HR, "merger board meets Oslo; visitor parking")
                and "holidays" in _found(client, ENG, "paid holiday days")
            ),
            "indexing",
        )
        assert any(canary.encode() in (r.value or b"") for r in _dead_letters(settings))
        kafka_dir = broker[1] / "kafka"
        # The greps below can see it: it reaches both disks (the store flushes once per
        # batch, just after the chunks become searchable).
        _eventually(
            lambda: bool(
                _files_holding(kafka_dir, canary.encode())
                and _files_holding(settings.store_path, canary.encode())
            ),
            "the canary on disk",
        )

        refused = client.delete("/v1/documents/merger-http?erase=true", headers=_auth(HR))
        assert refused.status_code == 403, refused.text
        unversioned = client.delete("/v1/documents/merger-http", headers=_auth(CONNECTOR))
        assert unversioned.status_code == 400, unversioned.text
        erased = client.delete("/v1/documents/merger-http?erase=true", headers=_auth(CONNECTOR))
        assert erased.status_code == 202, erased.text
        assert erased.json()["op"] == "erase"
        result = CliRunner().invoke(
            cli, ["erase", "--tenant", "acme", "merger-cli", "--reference", "GDPR-7"], env=env
        )
        assert result.exit_code == 0, result.output
        started = time.monotonic()

        store = client.app.state.services.store
        _eventually(
            lambda: (
                store.count(tenant="acme", doc_id="merger-http") == 0
                and store.count(tenant="acme", doc_id="merger-cli") == 0
            ),
            "the chunks' deletion",
        )
        store_s = _eventually(
            lambda: not _files_holding(settings.store_path, canary.encode()),
            "the store's purge",
        )
        kafka_s = _eventually(
            lambda: not _files_holding(kafka_dir, canary.encode()), "compaction", timeout_s=90
        )
        print(  # noqa: T201 - the measurement, shown with -s
            f"\nerase to gone: store {store_s:.1f}s, kafka {time.monotonic() - started:.1f}s"
            f" (kafka wait {kafka_s:.1f}s)"
        )

        assert _found(client, HR, "merger board meets Oslo; visitor parking") == {"parking"}
        assert "holidays" in _found(client, ENG, "paid holiday days")
        assert "holidays" not in _found(client, HR, "paid holiday days")
        assert store.count(tenant="acme", doc_id="parking") > 0

    erasures = [
        _erasure(r.value) for r in read_to_end(settings.kafka_bootstrap, topic=settings.audit_topic)
    ]
    recorded = {(e.doc_id, e.via, e.requested_by) for e in erasures if e is not None}
    assert ("merger-http", "api", "wiki-connector") in recorded
    assert any(doc == "merger-cli" and via == "cli" for doc, via, _ in recorded)
    wide = {**env, "COLUMNS": "300"}  # the table's cells unabridged
    listed = CliRunner().invoke(cli, ["audit", "erasures", "--tenant", "acme"], env=wide)
    assert listed.exit_code == 0 and "merger-http" in listed.output and "GDPR-7" in listed.output
    assert not [r for r in caplog.records if canary in r.getMessage()]
    assert canary.encode() not in (broker[1] / "kafka.log").read_bytes()  # the broker's log
    assert not [text for text in _span_texts(spans) if canary in text]
    assert not _files_holding(settings.store_path, canary.encode())
    assert not _files_holding(kafka_dir, canary.encode())


def _dead_letters(settings: Settings) -> list[Any]:
    return [r for r in read_to_end(settings.kafka_bootstrap, topic=settings.dlq_topic) if r.value]


def _erasure(value: bytes | None) -> ErasureRecord | None:
    try:
        return ErasureRecord.model_validate_json(value or b"")
    except ValueError:
        return None


async def test_a_replay_of_the_compacted_topic_rebuilds_the_index(
    settings: Settings, embedder: SentenceTransformerEmbedder, tmp_path: Path
) -> None:
    """After the test above (its topic compacted: the erased documents are gone from it,
    and the last event of ``holidays`` is an ACL change): a new consumer group replays
    the topic into a new store, which ends up with the same chunks, versions and ACLs."""
    async with open_shared_clients(settings, embedder=embedder) as original:
        expected = _snapshot(original.store)
    assert {row[0] for row in expected} == {"parking", "holidays"}
    replay = settings.model_copy(
        update={"data_dir": tmp_path / "replay", "consumer_group": "erasure-replay"}
    )
    async with ingesting(replay, embedder=embedder) as clients:
        deadline = time.monotonic() + 60
        while _snapshot(clients.store) != expected and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        rebuilt = _snapshot(clients.store)
    assert rebuilt == expected
    holidays = [row for row in rebuilt if row[0] == "holidays"]
    assert holidays and all(row[2:4] == (2, ("eng",)) for row in holidays), holidays


def _snapshot(store: VectorStore) -> list[tuple[str, int, int, tuple[str, ...], str]]:
    return sorted(
        (c.doc_id, c.chunk_no, c.version, c.acl.groups, c.text) for c in store.chunks(tenant="acme")
    )
