"""Ingest throughput and freshness on a private broker, the real model and embedded Qdrant.

    python -m bench.ingest --quick        # about 3 minutes on 2 cores
    python -m bench.ingest                # bigger sizes

Throughput: N documents are published in a burst; pipeline chunks/s is the chunk count
divided by the time from the first publish to the last document applied. The baseline,
in the same run, is the same chunk inputs (title + chunk text, as the writer builds
them) through ``model.encode`` in batches of the worker's batch size.

Freshness: documents published one every 50 ms (20 docs/s); each is timed from just
before its publish to the moment its applied version is recorded (written after its
chunks, so it is searchable then), polled every 2 ms. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
import uuid

from bench.harness import document, running_pipeline, workspace
from core.settings import Settings
from deploy.stack import private_broker
from headwater.clients import SharedClients
from ingest.publish import DocumentPublisher
from ingest.runtime import build_writer


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _applied(clients: SharedClients, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
    return set(await asyncio.to_thread(clients.store.document_states, keys))


async def throughput(
    settings: Settings, clients: SharedClients, *, docs: int, words: int
) -> dict[str, float]:
    rng = random.Random(7)
    events = [document(rng, f"tp-{i}", words=words) for i in range(docs)]
    writer = build_writer(settings, store=clients.store, embedder=clients.embedder)
    inputs = [
        f"{event.title}\n{chunk.text}"
        for event in events
        for chunk in writer._chunker.split(event.text or "")  # noqa: SLF001 - same chunks as the writer
    ]
    started = time.perf_counter()
    for start in range(0, len(inputs), settings.ingest_batch_max):
        await asyncio.to_thread(
            clients.embedder.embed, inputs[start : start + settings.ingest_batch_max]
        )
    bare_s = time.perf_counter() - started

    keys = [(event.tenant, event.doc_id) for event in events]
    started = time.perf_counter()
    for event in events:
        clients.producer.produce(
            settings.documents_topic,
            key=event.key.encode(),
            value=event.to_json(),
            on_done=lambda error, _: None if error is None else print("send failed", error),
        )
    clients.producer.flush()
    pending = set(keys)
    while pending:
        pending -= await _applied(clients, list(pending))
        await asyncio.sleep(0.02)
    pipeline_s = time.perf_counter() - started
    return {
        "documents": docs,
        "chunks": len(inputs),
        "pipeline_chunks_per_s": round(len(inputs) / pipeline_s, 1),
        "bare_encode_chunks_per_s": round(len(inputs) / bare_s, 1),
        "ratio": round(bare_s / pipeline_s, 3),
    }


async def freshness(
    settings: Settings, clients: SharedClients, *, seconds: float, rate: float
) -> dict[str, float]:
    rng = random.Random(11)
    publisher = DocumentPublisher(clients.producer, settings.documents_topic)
    published: dict[tuple[str, str], float] = {}
    fresh: list[float] = []
    done = asyncio.Event()

    async def watch() -> None:
        while not done.is_set() or len(fresh) < len(published):
            pending = [key for key in published if key not in seen]
            if pending:
                now = time.perf_counter()
                for key in await _applied(clients, pending):
                    seen.add(key)
                    fresh.append(now - published[key])
            await asyncio.sleep(0.002)

    seen: set[tuple[str, str]] = set()
    watcher = asyncio.create_task(watch())
    interval = 1.0 / rate
    count = int(seconds * rate)
    started = time.perf_counter()
    for i in range(count):
        await asyncio.sleep(max(0.0, started + i * interval - time.perf_counter()))
        event = document(rng, f"fresh-{uuid.uuid4().hex[:10]}", words=120)
        published[(event.tenant, event.doc_id)] = time.perf_counter()
        await publisher.publish_async(event)
    done.set()
    await asyncio.wait_for(watcher, timeout=120)
    return {
        "freshness_docs": count,
        "freshness_rate_docs_per_s": rate,
        "freshness_p50_s": round(statistics.median(fresh), 4),
        "freshness_p95_s": round(_quantile(fresh, 0.95), 4),
        "freshness_max_s": round(max(fresh), 4),
    }


async def run(args: argparse.Namespace) -> dict[str, float]:
    with workspace() as root, private_broker(root) as bootstrap:
        settings = Settings(
            kafka_bootstrap=bootstrap,
            data_dir=root / "data",
            consumer_group=f"bench-{uuid.uuid4().hex[:6]}",
            topic_partitions=3,
        )
        async with running_pipeline(settings) as clients:
            warm = document(random.Random(1), "warm-up", words=50)
            await DocumentPublisher(clients.producer, settings.documents_topic).publish_async(warm)
            while not await _applied(clients, [(warm.tenant, warm.doc_id)]):
                await asyncio.sleep(0.05)
            result = await throughput(settings, clients, docs=args.docs, words=args.words)
            result |= await freshness(settings, clients, seconds=args.seconds, rate=args.rate)
            return result


def main() -> None:
    parser = argparse.ArgumentParser(description="Ingest throughput and freshness benchmark.")
    parser.add_argument("--quick", action="store_true", help="small sizes (a few minutes)")
    parser.add_argument("--docs", type=int, help="documents for the throughput run")
    parser.add_argument("--words", type=int, default=300, help="words per throughput document")
    parser.add_argument("--seconds", type=float, help="length of the freshness run")
    parser.add_argument("--rate", type=float, default=20.0, help="freshness publish rate, docs/s")
    args = parser.parse_args()
    args.docs = args.docs or (200 if args.quick else 1000)
    args.seconds = args.seconds or (15.0 if args.quick else 60.0)
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
