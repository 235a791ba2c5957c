"""Erase -> gone from disk: how long after an erasure a document's text is in no file of
the embedded store and no Kafka log segment file, on a broker of its own.

    python -m bench.erasure                     # segment.ms 10 s, max.compaction.lag.ms 30 s
    python -m bench.erasure --segment-ms 3600000 --max-lag-ms 86400000   # the defaults: a day

It starts a Kafka broker (deploy/kafka/kafka.sh, broker defaults: the log cleaner wakes
every 15 s) and the ingest worker over an embedded store, both in a temporary folder,
publishes --docs filler documents and one holding a canary string, waits until the canary
is indexed and on both disks, erases it as ``headwater erase`` does, then reads every file
of both folders every half second until the canary is in none. The topics have the
documented configs (docs/operating.md, "Kafka topics": file.delete.delay.ms 60 s among
them) but for segment.ms and max.compaction.lag.ms, given here so that a run takes
minutes, not a day; the bound docs/operating.md ("Erasure") gives for them is printed
beside the measurement. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

from core.kafka import ensure_topics
from core.kafka.admin import FILE_DELETE_DELAY_MS
from core.settings import Settings
from deploy.stack import private_broker
from headwater.processes import ingesting
from ingest.models import DocumentEvent
from ingest.publish import DocumentEraser, DocumentPublisher, Requester
from retrieval.embedding import open_embedder

CLEANER_BACKOFF_S = 15.0  # the broker's log.cleaner.backoff.ms


def _holding(folder: Path, needle: bytes) -> bool:
    """Whether a file under ``folder`` holds ``needle``; True too if a file vanished while
    it was read (a segment being replaced): the next look decides."""
    for directory, _, names in os.walk(folder):
        for name in names:
            try:
                if needle in (Path(directory) / name).read_bytes():
                    return True
            except OSError:
                return True
    return False


def _event(doc_id: str, text: str) -> DocumentEvent:
    return DocumentEvent(
        op="upsert", tenant="bench", doc_id=doc_id, version=1, acl={"public": True}, text=text
    )


async def _measure(
    settings: Settings, kafka_dir: Path, docs: int, timeout_s: float
) -> dict[str, float]:
    # Capitals that occur nowhere else: the store compresses payloads (LZ4), and a run of
    # four bytes seen before in the same payload would be a back-reference, out of sight.
    canary = "QZX" + "".join(random.choices("GHJKMNPQRSTVWXYZ", k=24))
    embedder = await asyncio.to_thread(open_embedder, settings)
    async with ingesting(settings, embedder=embedder) as clients:
        publisher = DocumentPublisher(clients.producer, settings.documents_topic)
        for n in range(docs):
            await publisher.publish_async(_event(f"filler-{n}", f"Filler {n}: travel budgets."))
        await publisher.publish_async(_event("secret", f"The code name is {canary}."))
        store = clients.store
        deadline = time.monotonic() + timeout_s
        while store.count(tenant="bench") < docs + 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        eraser = DocumentEraser(
            clients.producer,
            documents_topic=settings.documents_topic,
            dlq_topic=settings.dlq_topic,
            audit_topic=settings.audit_topic,
        )
        # On both disks before the erasure (the store flushes once per batch, after the
        # chunks are searchable), or there is nothing to measure.
        for folder in (kafka_dir, settings.store_path):
            while not await asyncio.to_thread(_holding, folder, canary.encode()):
                if time.monotonic() > deadline:
                    raise SystemExit(f"the canary never reached {folder}: nothing to measure")
                await asyncio.sleep(0.5)
        started = time.monotonic()
        await eraser.erase("bench", "secret", requester=Requester("bench", via="cli"))
        gone: dict[str, float] = {}
        checks = {
            "index_s": lambda: store.count(tenant="bench", doc_id="secret") == 0,
            "store_s": lambda: not _holding(settings.store_path, canary.encode()),
            "kafka_s": lambda: not _holding(kafka_dir, canary.encode()),
        }
        while len(gone) < len(checks) and time.monotonic() - started < timeout_s:
            for name, check in checks.items():
                if name not in gone and await asyncio.to_thread(check):
                    gone[name] = round(time.monotonic() - started, 1)
            await asyncio.sleep(0.5)
        return gone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--segment-ms", type=int, default=10_000, help="segment.ms (10000)")
    parser.add_argument(
        "--max-lag-ms", type=int, default=30_000, help="max.compaction.lag.ms (30000)"
    )
    parser.add_argument("--docs", type=int, default=50, help="filler documents (50)")
    parser.add_argument("--partitions", type=int, default=3, help="partitions per topic (3)")
    parser.add_argument("--timeout-s", type=float, default=900.0, help="give up after (900)")
    args = parser.parse_args()
    # A SIGTERM (a timeout) unwinds too, so the broker is stopped and the folder removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="headwater-erasure-") as folder:
        root = Path(folder)
        with private_broker(root) as bootstrap:
            settings = Settings(
                kafka_bootstrap=bootstrap,
                data_dir=root / "data",
                consumer_group="bench-erasure",
                topic_partitions=args.partitions,
                documents_segment_ms=args.segment_ms,
                documents_max_compaction_lag_ms=args.max_lag_ms,
            )
            ensure_topics(settings)
            gone = asyncio.run(_measure(settings, root / "kafka", args.docs, args.timeout_s))
    bound_s = (
        max(1.25 * args.segment_ms, args.max_lag_ms) / 1000
        + CLEANER_BACKOFF_S
        + FILE_DELETE_DELAY_MS / 1000
    )
    result = {
        "segment_ms": args.segment_ms,
        "max_compaction_lag_ms": args.max_lag_ms,
        "file_delete_delay_ms": FILE_DELETE_DELAY_MS,
        "documents": args.docs + 1,
        "bound_s_without_cleaning_time": bound_s,
        **gone,
    }
    print(json.dumps(result))  # noqa: T201 - the bench's output


if __name__ == "__main__":
    main()
