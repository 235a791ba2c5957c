"""Chaos run of the scale-out topology: ``python -m bench.chaos --quick --scale-out``.

A private Kafka broker, a three-node Qdrant cluster (``../shared/bin/qdrant``; the
collection has 3 shards of 2 copies), two ``headwater worker`` processes in one consumer
group and two ``headwater api`` replicas, each its own OS process (``deploy.scale``).
While this script publishes documents with updates, ACL changes, deletes and re-creates,
two clients keep searching through the replicas, and it kill -9s a Qdrant node (then
restarts it), restarts the broker, and kill -9s one ingest worker and one API replica
(each started again at once). Once the consumer lag is 0 the cluster's contents are compared
with what the acknowledged sends imply (as ``bench.chaos`` does on the embedded store).

Clients act as a load balancer would: a replica that refuses the connection is skipped
for the next one (``retried``); a 503 must carry ``Retry-After`` (the client waits that
long, at most a second, and asks again). Any other failure, and any hit whose document
version the client's principal may not read, is counted against the run. Prints one JSON
object; the pass mark is zeros in ``missing``, ``phantom``, ``stale``, ``acl_mismatch``,
``unauthorised_hits`` and ``bad_answers`` (a search that no replica answered after its
retries counts as a bad answer).
"""

from __future__ import annotations

import itertools
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from acl.models import DocumentAcl, Principal
from bench.chaos import (
    GROUPS,
    AckedSends,
    applied_events,
    broker_process,
    check,
    wait_lag,
    workload,
)
from bench.harness import WORDS, workspace
from core.kafka import ensure_topics
from core.settings import Settings
from deploy.process import free_port
from deploy.scale import QdrantCluster, ScaleOut
from headwater.keys_cli import open_registry
from ingest.models import DocumentEvent
from retrieval.qdrant import QdrantServerStore

READER = Principal(tenant="acme", user_id="user0@acme.com", groups=tuple(GROUPS[:2]))
Say = Callable[[str], None]


def acl_history(events: list[DocumentEvent]) -> dict[tuple[str, int], DocumentAcl]:
    """Each document version's ACL: what a hit at that version may be shown to."""
    history: dict[tuple[str, int], DocumentAcl] = {}
    current: dict[str, DocumentAcl] = {}
    for event in events:
        if event.op != "delete":
            current[event.doc_id] = event.acl
        if event.doc_id in current:
            history[(event.doc_id, event.version)] = current[event.doc_id]
    return history


@dataclass
class Clients:
    """Searchers asking through every replica while faults happen."""

    replicas: list[str]
    key: str
    allowed: dict[tuple[str, int], DocumentAcl]
    outcomes: Counter[str] = field(default_factory=Counter)
    bad: list[str] = field(default_factory=list)
    unauthorised: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _count(self, outcome: str, bad: str | None = None) -> None:
        with self._lock:
            self.outcomes[outcome] += 1
            if bad is not None:
                self.bad.append(bad)

    def start(self, count: int = 2) -> None:
        for n in range(count):
            thread = threading.Thread(target=self._ask, args=(n,), name=f"chaos-client-{n}")
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _ask(self, n: int) -> None:
        rng = random.Random(n)
        order = itertools.cycle(range(len(self.replicas)))
        with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {self.key}"}) as http:
            while not self._stop.is_set():
                query = " ".join(rng.choice(WORDS) for _ in range(4))
                self._one(http, order, query)
                time.sleep(0.05)

    def _one(self, http: httpx.Client, order: itertools.cycle[int], query: str) -> None:
        tries = len(self.replicas) * 3
        for attempt in range(tries):
            replica = self.replicas[next(order)]
            try:
                response = http.post(f"{replica}/v1/search", json={"query": query, "top_k": 5})
            except httpx.TransportError:
                self._count("retried")  # the balancer moves to the next replica
                continue
            if response.status_code == 200:
                self._count("ok" if attempt == 0 else "ok_after_retry")
                self._check_hits(response.json()["data"])
                return
            retry_after = response.headers.get("Retry-After")
            if response.status_code == 503 and retry_after is not None:
                self._count("503_retry_after")
                time.sleep(min(1.0, float(retry_after)))
                continue
            self._count(
                f"status_{response.status_code}", f"{response.status_code} {response.text[:200]}"
            )
            return
        self._count("gave_up", f"no answer after {tries} tries")

    def _check_hits(self, hits: list[dict[str, Any]]) -> None:
        for hit in hits:
            acl = self.allowed.get((hit["doc_id"], hit["version"]))
            if acl is None or not acl.allows(READER):
                with self._lock:
                    self.unauthorised.append(f"{hit['doc_id']}@{hit['version']}")


def _applied(scale: ScaleOut) -> float:
    """Events the running workers applied since they started (their own /metrics)."""
    return sum(
        applied_events(int(process.env["HEADWATER_PORT"]))
        for process in scale.processes
        if process.name.startswith("worker") and process.running()
    )


def _all_active(cluster: QdrantCluster, collection: str) -> bool:
    return set(cluster.replica_states(collection)) == {"Active"}


def _wait(what: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if what():
            return True
        time.sleep(0.5)
    return False


def _settings(bootstrap: str, root: Path) -> Settings:
    return Settings(
        kafka_bootstrap=bootstrap,
        data_dir=root / "data",
        consumer_group=f"chaos-{uuid.uuid4().hex[:6]}",
        topic_partitions=3,
        api_keys_source="topic",
        rate_limit_rps=0,
    )


def _env(settings: Settings) -> dict[str, str]:
    names = (
        "kafka_bootstrap",
        "data_dir",
        "consumer_group",
        "topic_partitions",
        "api_keys_source",
        "rate_limit_rps",
    )
    env = {f"HEADWATER_{name.upper()}": str(getattr(settings, name)) for name in names}
    return {**env, "HEADWATER_LOG_LEVEL": "WARNING"}


def run_scale_out(
    *,
    documents: int,
    changes: int,
    rate: float,
    node_kills: int = 1,
    restart_broker: bool = True,
    seed: int = 5,
    say: Say = print,
) -> dict[str, Any]:
    rng = random.Random(seed)
    events = workload(rng, documents=documents, changes=changes)
    with workspace() as root:
        port, controller_port = free_port(), free_port()
        bootstrap = f"127.0.0.1:{port}"
        broker = broker_process(root, port, controller_port)
        broker.start()
        scale: ScaleOut | None = None
        clients: Clients | None = None
        try:
            broker.wait_ready(120)
            settings = _settings(bootstrap, root)
            ensure_topics(settings)
            with open_registry(settings) as registry:
                key, _ = registry.create(READER)
            scale = ScaleOut(root, env=_env(settings))
            say("starting a 3-node Qdrant cluster, 2 workers, 2 API replicas")
            scale.start_qdrant_cluster(nodes=3, shards=3, replicas=2)
            # One worker creates the collection before the others open it.
            scale.start_worker(name="worker-1")
            scale.wait_ready(300)
            scale.start_worker(name="worker-2")
            replicas = scale.start_apis(2, need_llm=False)
            scale.wait_ready(300)
            cluster = scale.cluster
            assert cluster is not None
            started = time.monotonic()
            sends = AckedSends(bootstrap, settings.documents_topic)
            publisher = sends.publish_paced(events, rate=rate)
            clients = Clients(replicas=replicas, key=key, allowed=acl_history(events))
            clients.start()

            def at() -> str:
                return f"{time.monotonic() - started:.0f}s"

            faults: Counter[str] = Counter()
            _wait(lambda: _applied(scale) >= 20, 300)
            for kill in range(node_kills):
                node = kill % 3  # node 1 first: every process asks it first
                say(f"kill -9 of Qdrant node {node + 1} at {at()}")
                cluster.kill(node)
                faults["qdrant_node_kills"] += 1
                time.sleep(5)
                waited = scale.restart_node(node)
                say(f"Qdrant node {node + 1} back at {at()} ({waited:.0f}s to ready)")
                if kill + 1 < node_kills:  # the next kill only once every copy is back
                    _wait(lambda: _all_active(cluster, settings.collection), 120)
            if restart_broker and publisher.is_alive():
                say(f"restarting the Kafka broker at {at()}")
                broker.stop()
                broker = broker_process(root, port, controller_port)
                broker.start()
                broker.wait_ready(120)
                faults["broker_restarts"] += 1
            elif restart_broker:
                say("publishing ended before the broker restart: lower --rate")
            say(f"kill -9 of worker-1 at {at()}")
            scale.kill("worker-1")
            faults["worker_kills"] += 1
            scale.process("worker-1").start()
            say(f"kill -9 of api-0 at {at()} (clients keep asking)")
            scale.kill("api-0")
            faults["api_replica_kills"] += 1
            time.sleep(3)
            scale.process("api-0").start()
            publisher.join()
            sends.close()
            for name in ("worker-1", "api-0"):
                waited = scale.process(name).wait_ready(300)
                say(f"{name} ready again at {at()} (waited {waited:.0f}s more)")
            say(f"published {len(events)} events ({sends.failed} unacknowledged) at {at()}")
            wait_lag(settings, timeout_s=900, tails=lambda: scale.log_tails(30))
            clients.stop()
            say(f"lag 0 at {at()}; comparing the cluster with the acknowledged sends")
            expected = sends.expected()
            store = QdrantServerStore.connect(
                str(scale.qdrant_url), api_key=None, alias=settings.collection
            )
            try:
                result = check(store, expected)
            finally:
                store.close()
            replicas_now = cluster.replica_states(settings.collection)
            return {
                "documents": documents,
                "events": len(events),
                "acknowledged": len(sends.acked),
                "unacknowledged": sends.failed,
                "qdrant_node_kills": faults["qdrant_node_kills"],
                "worker_kills": faults["worker_kills"],
                "api_replica_kills": faults["api_replica_kills"],
                "broker_restarts": faults["broker_restarts"],
                "elapsed_s": round(time.monotonic() - started, 1),
                **result,
                "searches": dict(clients.outcomes),
                "unauthorised_hits": len(clients.unauthorised),
                "bad_answers": len(clients.bad),
                "bad_answer_samples": clients.bad[:5],
                "shard_replicas": replicas_now,
            }
        finally:
            if clients is not None:
                clients.stop()
            if scale is not None:
                scale.stop()
            broker.stop()
