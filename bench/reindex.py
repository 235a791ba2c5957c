"""Re-index throughput against bare encoding of the same chunks (issue 16).

    python -m bench.reindex --quick       # 300 documents, a few minutes on 2 cores
    python -m bench.reindex --runs 3      # 1,000 documents, median of three

A private Kafka broker; N documents (``--words`` words each) are published to the
documents topic, then ``headwater reindex`` (in-process, the model already loaded)
replays the topic into a new collection and switches the alias: its wall time runs from
the call to the switch, so it includes the consumer group's join and the caught-up
check (fixed costs of a few seconds). The baseline, in the same run and process: the
same chunk inputs (title + chunk text, as the writer builds them) through the model in
batches of the worker's batch size. Prints one JSON object: each run's figures and the
median ratio (target: re-index ≥ 0.9 × bare encode).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
import uuid
from typing import Any

from rich.console import Console

from bench.harness import document, workspace
from core.kafka import KafkaProducer, ensure_topics
from core.settings import Settings
from deploy.stack import private_broker
from headwater.reindex import reindex
from ingest.runtime import build_writer
from retrieval.embedding import Embedder, open_embedder
from retrieval.store import open_store


def _inputs(settings: Settings, embedder: Embedder, texts: list[tuple[str, str]]) -> list[str]:
    store = open_store(settings.model_copy(update={"collection": "bench-chunker"}))
    try:
        chunker = build_writer(settings, store=store, embedder=embedder)._chunker  # noqa: SLF001
    finally:
        store.close()
    return [f"{title}\n{chunk.text}" for title, text in texts for chunk in chunker.split(text)]


async def one_run(embedder: Embedder, *, docs: int, words: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    events = [document(rng, f"doc-{i}", words=words) for i in range(docs)]
    with workspace() as root, private_broker(root) as bootstrap:
        settings = Settings(
            kafka_bootstrap=bootstrap,
            data_dir=root / "data",
            consumer_group=f"bench-{uuid.uuid4().hex[:6]}",
            topic_partitions=3,
        )
        ensure_topics(settings)
        producer = KafkaProducer(bootstrap)
        for event in events:
            producer.produce(
                settings.documents_topic,
                key=event.key.encode(),
                value=event.to_json(),
                on_done=lambda error, _: None if error is None else print("send failed", error),
            )
        producer.flush()
        producer.close()
        inputs = _inputs(settings, embedder, [(e.title or "", e.text or "") for e in events])
        started = time.perf_counter()
        for start in range(0, len(inputs), settings.ingest_batch_max):
            embedder.embed(inputs[start : start + settings.ingest_batch_max])
        bare_s = time.perf_counter() - started
        started = time.perf_counter()
        result = await reindex(settings, console=Console(quiet=True), poll_s=0.5, embedder=embedder)
        reindex_s = time.perf_counter() - started
    assert result.chunks == len(inputs), (result.chunks, len(inputs))
    return {
        "documents": docs,
        "chunks": len(inputs),
        "reindex_chunks_per_s": round(len(inputs) / reindex_s, 1),
        "bare_encode_chunks_per_s": round(len(inputs) / bare_s, 1),
        "ratio": round(bare_s / reindex_s, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300 documents, one run")
    parser.add_argument("--docs", type=int, help="documents per run (default 1,000)")
    parser.add_argument("--words", type=int, default=300, help="words per document")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    docs = args.docs or (300 if args.quick else 1000)
    embedder = open_embedder(Settings())
    runs = [
        asyncio.run(one_run(embedder, docs=docs, words=args.words, seed=7 + n))
        for n in range(args.runs)
    ]
    print(json.dumps({"runs": runs, "median_ratio": statistics.median(r["ratio"] for r in runs)}))


if __name__ == "__main__":
    main()
