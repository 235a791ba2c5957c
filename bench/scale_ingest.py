"""Ingest throughput with one and with two workers on a Qdrant server, and each
process's resident memory (issue 20).

    python -m bench.scale_ingest --docs 400 --runs 3          # about 15 minutes on 2 cores
    python -m bench.scale_ingest --store cluster              # on three Qdrant nodes

Per run and per worker count (1, then 2; the order alternates between runs): a fresh
consumer group and collection, the workers started and ready (the model loaded) before
anything is published, then ``--docs`` documents of ``--words`` words published in a
burst. Throughput is the documents (and the chunks the store then holds) over the time
from the first publish until the group's lag is 0. Then each process's resident set
(``VmRSS`` of it and its children, from /proc): the workers and the Qdrant node(s).
Prints one JSON object: medians over the runs and each run's figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
import uuid
from typing import Any

from bench.chaos import wait_lag
from bench.harness import document, rss_mb, workspace
from core.kafka import KafkaProducer, ensure_topics
from core.settings import Settings
from deploy.process import ManagedProcess, free_port
from deploy.scale import ScaleOut
from deploy.stack import kafka_process
from retrieval.qdrant import QdrantServerStore


def _memory(processes: list[ManagedProcess]) -> dict[str, float]:
    return {p.name: rss_mb(p.pid) for p in processes if p.pid is not None and p.running()}


def one_run(
    scale: ScaleOut, bootstrap: str, *, workers: int, docs: int, words: int, seed: int
) -> dict[str, Any]:
    run = uuid.uuid4().hex[:6]
    settings = Settings(
        kafka_bootstrap=bootstrap,
        documents_topic=f"bench-{run}.documents",
        dlq_topic=f"bench-{run}.documents.dlq",
        consumer_group=f"bench-{run}",
        collection=f"bench_{run}",
        topic_partitions=2,
    )
    ensure_topics(settings)
    env = {
        "HEADWATER_DOCUMENTS_TOPIC": settings.documents_topic,
        "HEADWATER_DLQ_TOPIC": settings.dlq_topic,
        "HEADWATER_CONSUMER_GROUP": settings.consumer_group,
        "HEADWATER_COLLECTION": settings.collection,
    }
    started_workers = [
        scale.start_worker(name=f"worker-{run}-{n}", env=env) for n in range(workers)
    ]
    scale.wait_ready(300)
    rng = random.Random(seed)
    events = [document(rng, f"doc-{n}", words=words) for n in range(docs)]
    producer = KafkaProducer(bootstrap)
    failed: list[str] = []

    def on_done(error: str | None, _: object) -> None:
        if error is not None:
            failed.append(error)

    started = time.monotonic()
    for event in events:
        producer.produce(
            settings.documents_topic,
            key=event.key.encode(),
            value=event.to_json(),
            on_done=on_done,
        )
    producer.close()
    if failed:
        raise SystemExit(f"{len(failed)} documents were not acknowledged: {failed[0]}")
    wait_lag(settings, timeout_s=1800, tails=lambda: "the workers did not catch up", poll_s=0.2)
    elapsed = time.monotonic() - started
    memory = _memory(scale.processes)
    store = QdrantServerStore.connect(
        str(scale.qdrant_url), api_key=None, alias=settings.collection
    )
    store.ensure_collection(dim=384, model=settings.embedding_model)
    chunks = store.count(tenant="acme")
    store.close()
    for process in started_workers:
        process.stop()
        scale.processes.remove(process)
    return {
        "workers": workers,
        "seconds": round(elapsed, 1),
        "docs_per_s": round(docs / elapsed, 2),
        "chunks": chunks,
        "chunks_per_s": round(chunks / elapsed, 1),
        "rss_mb": memory,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=400, help="documents per run")
    parser.add_argument("--words", type=int, default=300, help="words per document")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--store", choices=["server", "cluster"], default="server")
    args = parser.parse_args()
    results: list[dict[str, Any]] = []
    with workspace() as root:
        port = free_port()
        broker = kafka_process(port=port, data_dir=root / "kafka", log_path=root / "kafka.log")
        broker.start()
        try:
            broker.wait_ready(120)
            bootstrap = f"127.0.0.1:{port}"
            with ScaleOut(root, env={"HEADWATER_KAFKA_BOOTSTRAP": bootstrap}) as scale:
                scale.env["HEADWATER_LOG_LEVEL"] = "WARNING"
                if args.store == "server":
                    scale.start_qdrant()
                else:
                    scale.start_qdrant_cluster(nodes=3, shards=3, replicas=2)
                for number in range(args.runs):
                    order = (1, 2) if number % 2 == 0 else (2, 1)
                    for workers in order:
                        result = one_run(
                            scale,
                            bootstrap,
                            workers=workers,
                            docs=args.docs,
                            words=args.words,
                            seed=number,
                        )
                        print(json.dumps(result), file=sys.stderr)
                        results.append(result)
        finally:
            broker.stop()

    def median(workers: int, key: str) -> float:
        return float(statistics.median(r[key] for r in results if r["workers"] == workers))

    print(
        json.dumps(
            {
                "bench": "scale_ingest",
                "store": args.store,
                "docs": args.docs,
                "words": args.words,
                "runs": args.runs,
                "one_worker": {
                    "docs_per_s": median(1, "docs_per_s"),
                    "chunks_per_s": median(1, "chunks_per_s"),
                },
                "two_workers": {
                    "docs_per_s": median(2, "docs_per_s"),
                    "chunks_per_s": median(2, "chunks_per_s"),
                },
                "speedup": round(median(2, "chunks_per_s") / median(1, "chunks_per_s"), 2),
                "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
                "each_run": results,
            }
        )
    )


if __name__ == "__main__":
    main()
