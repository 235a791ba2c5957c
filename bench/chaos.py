"""Chaos run of the ingest path: nothing acknowledged is lost, nothing deleted lingers.

    python -m bench.chaos --quick     # ~1,000 documents, about 3 minutes on 2 cores
    python -m bench.chaos             # more documents and changes
    python -m bench.chaos --quick --reindex-kills 3   # then a re-index, killed 3 times
    python -m bench.chaos --quick --scale-out         # a Qdrant cluster, 2 workers, 2 APIs

A private Kafka broker and a ``headwater worker`` process (embedded store) run while
this script publishes documents with updates, ACL changes, deletes and re-creates.
Meanwhile it (a) kill -9s the worker and restarts it, (b) makes the store fail for a
stretch (``HEADWATER_FAULT_STORE_FLAG``), (c) restarts the broker mid-produce. Once
the consumer lag is 0 the worker is stopped and the store is compared with the state
that the *acknowledged* sends imply. Prints one JSON object; zeros are the pass mark.

With ``--scale-out``, the same workload runs on the scale-out topology instead (a
three-node Qdrant cluster, two workers, two API replicas with clients asking; kills of
each and a broker restart): see :mod:`bench.chaos_scale`.

With ``--reindex-kills N``, once that check is done, ``headwater reindex`` rebuilds the
index from the documents topic with other chunking (a new collection), and is kill -9'd
N times while it replays, restarted each time (it resumes); when it has switched the
alias, the new collection is compared with the same expectations (``reindex_*`` keys).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from acl.models import DocumentAcl
from bench.harness import WORDS, workspace
from core.errors import UpstreamUnavailable
from core.kafka import Delivered, KafkaProducer, consumer_lag, ensure_topics
from core.settings import Settings
from deploy.process import ManagedProcess, free_port
from deploy.stack import REPO, kafka_process
from ingest.models import DocumentEvent
from retrieval.qdrant_edge import EdgeStore
from retrieval.records import StoredChunk
from retrieval.schema import DocumentKey
from retrieval.store import VectorStore

GROUPS = ["hr", "eng", "sales", "legal", "finance"]


@dataclass
class Expected:
    """What the index must hold for one document after every acknowledged event."""

    present: bool = False
    version: int = 0
    text: str = ""
    acl: DocumentAcl = field(default_factory=DocumentAcl)

    def apply(self, event: DocumentEvent) -> None:
        self.version = event.version
        if event.op == "delete":
            self.present = False
        elif event.op == "acl":
            self.acl = event.acl
        else:
            self.present, self.text, self.acl = True, event.text or "", event.acl


def workload(rng: random.Random, *, documents: int, changes: int) -> list[DocumentEvent]:
    """Creates, then random changes; per document the versions rise by one each event."""
    versions: dict[str, int] = {}
    alive: dict[str, bool] = {}

    def acl() -> DocumentAcl:
        return DocumentAcl(
            groups=tuple(rng.sample(GROUPS, rng.randint(1, 2))),
            users=(f"user{rng.randint(0, 9)}@acme.com",) if rng.random() < 0.3 else (),
        )

    def event(doc_id: str, op: str) -> DocumentEvent:
        versions[doc_id] = versions.get(doc_id, 0) + 1
        text = (
            " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 60)))
            if op == "upsert"
            else None
        )
        alive[doc_id] = op != "delete"
        return DocumentEvent(
            op=op,
            tenant="acme",
            doc_id=doc_id,
            version=versions[doc_id],
            acl=acl() if op != "delete" else DocumentAcl(),
            title=doc_id,
            text=text,
        )

    events = [event(f"doc-{i}", "upsert") for i in range(documents)]
    for _ in range(changes):
        doc_id = f"doc-{rng.randrange(documents)}"
        if not alive[doc_id]:
            events.append(event(doc_id, "upsert"))
        else:
            events.append(event(doc_id, rng.choices(["upsert", "acl", "delete"], [5, 3, 2])[0]))
    return events


class AckedSends:
    """Publishes events and keeps those the broker acknowledged, in send order."""

    def __init__(self, bootstrap: str, topic: str):
        self._producer = KafkaProducer(bootstrap)
        self._topic = topic
        self._lock = threading.Lock()
        self.acked: list[tuple[int, DocumentEvent]] = []
        self.failed = 0

    def send(self, seq: int, event: DocumentEvent) -> None:
        def on_done(_error: str | None, delivered: Delivered | None) -> None:
            with self._lock:
                if delivered is not None:
                    self.acked.append((seq, event))
                else:
                    self.failed += 1

        self._producer.produce(
            self._topic, key=event.key.encode(), value=event.to_json(), on_done=on_done
        )

    def publish_paced(self, events: list[DocumentEvent], *, rate: float) -> threading.Thread:
        """A started thread that sends ``events`` at ``rate`` per second."""
        started = time.monotonic()

        def publish() -> None:
            for seq, event in enumerate(events):
                time.sleep(max(0.0, started + seq / rate - time.monotonic()))
                self.send(seq, event)

        thread = threading.Thread(target=publish, name="chaos-publisher")
        thread.start()
        return thread

    def expected(self) -> dict[DocumentKey, Expected]:
        """What the acknowledged sends imply, applied in send order."""
        expected: dict[DocumentKey, Expected] = {}
        for _, event in sorted(self.acked, key=lambda pair: pair[0]):
            expected.setdefault((event.tenant, event.doc_id), Expected()).apply(event)
        return expected

    def close(self) -> None:
        self._producer.close()


def applied_events(port: int) -> float:
    """Events the worker applied since it started (its own /metrics)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return 0.0
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("headwater_ingest_events_total{") and 'outcome="applied"' in line
    )


def _wait_progress(port: int, *, timeout_s: float, min_events: int) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if applied_events(port) >= min_events:
            return True
        time.sleep(0.2)
    return False


def _worker(root: Path, settings: Settings, flag: Path, metrics_port: int) -> ManagedProcess:
    return ManagedProcess(
        "worker",
        [sys.executable, "-m", "headwater.cli", "worker"],
        env={
            "HEADWATER_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "HEADWATER_DATA_DIR": str(settings.data_dir),
            "HEADWATER_CONSUMER_GROUP": settings.consumer_group,
            "HEADWATER_TOPIC_PARTITIONS": str(settings.topic_partitions),
            "HEADWATER_FAULT_STORE_FLAG": str(flag),
            "HEADWATER_LOG_LEVEL": "WARNING",
            "HEADWATER_PORT": str(metrics_port),
        },
        log_path=root / "worker.log",
        ready=lambda: True,
        cwd=REPO,
    )


def broker_process(root: Path, port: int, controller_port: int) -> ManagedProcess:
    return kafka_process(
        port=port,
        controller_port=controller_port,
        data_dir=root / "kafka",
        log_path=root / "kafka.log",
    )


def _reindex(root: Path, settings: Settings) -> ManagedProcess:
    return ManagedProcess(
        "reindex",
        [sys.executable, "-m", "headwater.cli", "reindex"],
        env={
            "HEADWATER_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "HEADWATER_DATA_DIR": str(settings.data_dir),
            "HEADWATER_CONSUMER_GROUP": settings.consumer_group,
            "HEADWATER_TOPIC_PARTITIONS": str(settings.topic_partitions),
            "HEADWATER_CHUNK_TOKENS": "96",
            "HEADWATER_CHUNK_OVERLAP_TOKENS": "16",
            "HEADWATER_LOG_LEVEL": "WARNING",
        },
        log_path=root / "reindex.log",
        ready=lambda: True,
        cwd=REPO,
    )


def reindex_with_kills(
    root: Path, settings: Settings, expected: dict[DocumentKey, Expected], kills: int, say: Any
) -> dict[str, int]:
    """Re-index, kill -9 it ``kills`` times while it replays, then let it finish; compare
    the collection the alias names afterwards with ``expected``."""
    rng = random.Random(11)
    aliases = settings.store_path / "aliases.json"
    building = f"{settings.collection}__next"
    done = 0
    for _ in range(kills):
        process = _reindex(root, settings)
        process.start()
        deadline = time.monotonic() + 300
        while building not in (json.loads(aliases.read_text()) if aliases.exists() else {}):
            if time.monotonic() > deadline:
                raise SystemExit(f"the re-index never started\n{process.log_tail()}")
            time.sleep(0.2)
        time.sleep(rng.uniform(2.0, 6.0))  # mid-replay
        if not process.running():
            process.stop()
            break
        process.kill()
        done += 1
        say(f"kill -9 #{done} of the re-index")
    process = _reindex(root, settings)
    process.start()
    if process.wait(timeout_s=900) != 0:
        raise SystemExit(f"the re-index failed\n{process.log_tail()}")
    store = EdgeStore(settings.store_path, alias=settings.collection)
    try:
        result = check(store, expected)
        collection = store.collection
    finally:
        store.close()
    say(f"re-indexed into {collection}")
    return {"reindex_kills": done, **{f"reindex_{k}": v for k, v in result.items()}}


def wait_lag(
    settings: Settings, *, timeout_s: float, tails: Callable[[], str], poll_s: float = 1.0
) -> None:
    """Returns once the consumer group has consumed the documents topic to its end (asked
    every ``poll_s``); exits with the lag and ``tails()`` (say, the processes' log tails)
    after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            lag = consumer_lag(
                settings.kafka_bootstrap,
                group=settings.consumer_group,
                topic=settings.documents_topic,
            )
        except UpstreamUnavailable:  # the group coordinator is still moving
            lag = {}
        if lag and sum(lag.values()) == 0:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"lag never reached 0: {lag}\n{tails()}")
        time.sleep(poll_s)


def check(store: VectorStore, expected: dict[DocumentKey, Expected]) -> dict[str, int]:
    """Compare every stored chunk with the expected documents."""
    import hashlib

    chunks: dict[str, list[StoredChunk]] = {}
    for chunk in store.chunks(tenant="acme"):
        chunks.setdefault(chunk.doc_id, []).append(chunk)
    missing = phantom = stale = acl_mismatch = 0
    for (_, doc_id), want in expected.items():
        got = chunks.get(doc_id, [])
        if want.present and not got:
            missing += 1
        if not want.present and got:
            phantom += 1
        if want.present and got:
            sha = hashlib.sha256(want.text.encode()).hexdigest()
            if any(c.version != want.version or c.document.content_sha256 != sha for c in got):
                stale += 1
            acl = (sorted(want.acl.users), sorted(want.acl.groups), want.acl.public)
            if any((sorted(c.acl.users), sorted(c.acl.groups), c.acl.public) != acl for c in got):
                acl_mismatch += 1
    unknown = set(chunks) - {doc_id for _, doc_id in expected}
    return {
        "missing": missing,
        "phantom": phantom + len(unknown),
        "stale": stale,
        "acl_mismatch": acl_mismatch,
    }


def run(
    *,
    documents: int,
    changes: int,
    kills: int,
    outage_s: float,
    restart_broker: bool,
    rate: float,
    reindex_kills: int | None = None,
    seed: int = 5,
    say: Any = print,
) -> dict[str, Any]:
    rng = random.Random(seed)
    events = workload(rng, documents=documents, changes=changes)
    with workspace() as root:
        port, controller_port = free_port(), free_port()
        bootstrap = f"127.0.0.1:{port}"
        broker = broker_process(root, port, controller_port)
        worker: ManagedProcess | None = None
        try:
            broker.start()
            broker.wait_ready(120)
            settings = Settings(
                kafka_bootstrap=bootstrap,
                data_dir=root / "data",
                consumer_group=f"chaos-{uuid.uuid4().hex[:6]}",
                topic_partitions=3,
            )
            ensure_topics(settings)
            flag = root / "store-outage"
            metrics_port = free_port()
            worker = _worker(root, settings, flag, metrics_port)
            worker.start()
            sends = AckedSends(bootstrap, settings.documents_topic)
            started = time.monotonic()
            publisher = sends.publish_paced(events, rate=rate)
            done_kills = 0
            for _ in range(kills):
                # Kill only a worker that is busy applying events, not one still loading.
                if not _wait_progress(metrics_port, timeout_s=120, min_events=10):
                    break
                worker.kill()
                done_kills += 1
                say(f"kill -9 #{done_kills} of the worker at {time.monotonic() - started:.0f}s")
                worker.start()
            broker_restarted = False
            if restart_broker and publisher.is_alive():
                say(f"restarting the Kafka broker at {time.monotonic() - started:.0f}s")
                broker.stop()
                broker = broker_process(root, port, controller_port)
                broker.start()
                broker.wait_ready(120)
                broker_restarted = True
            elif restart_broker:
                say("publishing ended before the broker restart: lower --rate")
            if outage_s > 0:
                _wait_progress(metrics_port, timeout_s=120, min_events=10)
                say(f"store outage for {outage_s:.0f}s from {time.monotonic() - started:.0f}s")
                flag.touch()
                time.sleep(outage_s)
                flag.unlink()
            publisher.join()
            sends.close()
            say(
                f"published {len(events)} events ({sends.failed} unacknowledged); waiting for lag 0"
            )
            wait_lag(settings, timeout_s=600, tails=worker.log_tail)
            worker.stop()
            expected = sends.expected()
            store = EdgeStore(settings.store_path, alias=settings.collection)
            try:
                result = check(store, expected)
            finally:
                store.close()
            if reindex_kills is not None:
                result |= reindex_with_kills(root, settings, expected, reindex_kills, say)
            return {
                "documents": documents,
                "events": len(events),
                "acknowledged": len(sends.acked),
                "unacknowledged": sends.failed,
                "kills": done_kills,
                "store_outage_s": outage_s,
                "broker_restarts": int(broker_restarted),
                "elapsed_s": round(time.monotonic() - started, 1),
                **result,
            }
        finally:
            # Whatever happened, leave no process behind.
            if worker is not None:
                worker.stop()
            broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="Chaos run of the ingest path.")
    parser.add_argument("--quick", action="store_true", help="1,000 documents, a few minutes")
    parser.add_argument("--documents", type=int)
    parser.add_argument("--changes", type=int)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--outage-s", type=float, default=8.0)
    parser.add_argument("--rate", type=float, default=25.0, help="events published per second")
    parser.add_argument("--no-broker-restart", action="store_true")
    parser.add_argument(
        "--reindex-kills",
        type=int,
        help="then re-index with other chunking, kill -9'd this many times mid-replay",
    )
    parser.add_argument(
        "--scale-out",
        action="store_true",
        help="on a 3-node Qdrant cluster with 2 workers and 2 API replicas (bench.chaos_scale)",
    )
    parser.add_argument(
        "--node-kills", type=int, default=1, help="with --scale-out: Qdrant node kills"
    )
    args = parser.parse_args()
    documents = args.documents or (1000 if args.quick else 3000)
    changes = args.changes or documents // 2
    if args.scale_out:
        from bench.chaos_scale import run_scale_out

        scaled = run_scale_out(
            documents=documents,
            changes=changes,
            rate=args.rate,
            node_kills=args.node_kills,
            restart_broker=not args.no_broker_restart,
            say=lambda line: print(line, file=sys.stderr),
        )
        print(json.dumps(scaled))
        return
    result = run(
        documents=documents,
        changes=changes,
        kills=args.kills,
        outage_s=args.outage_s,
        restart_broker=not args.no_broker_restart,
        rate=args.rate,
        reindex_kills=args.reindex_kills,
        say=lambda line: print(line, file=sys.stderr),
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
