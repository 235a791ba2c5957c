"""Where an embedding process's memory goes, and what bounds it (issue 20).

    python -m bench.memory --texts 2000        # a few minutes per variant on 2 cores

Each variant runs in a fresh child process: it loads the embedding engine as the worker
does (``open_embedder``), then embeds SciFact abstracts (``--corpus``, BEIR format) in
the worker's batch size, and reports its resident memory split by kind (``RssAnon``:
heap, the model's weights and torch's buffers; ``RssFile``: mapped files such as the
shared libraries) at the start, after loading and every ``--every`` texts. Variants:
the default allocator, and glibc's malloc limited to two arenas (``MALLOC_ARENA_MAX=2``),
the usual bound for a multi-threaded numeric process whose per-thread arenas keep freed
memory. Then, with ``--store-chunks N`` (0: skip), a child with no model writes N chunks
(SciFact pieces as ``bench.search_latency`` cuts them, random unit vectors of the
model's dimension: the bytes a real vector takes) into the embedded engine, as
``headwater serve`` holds them, reporting the same figures every N/5 chunks. Prints one
JSON object.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

CORPUS = Path("../shared/eval/scifact-train")
VARIANTS: dict[str, dict[str, str]] = {
    "default": {},
    "malloc_arena_max_2": {"MALLOC_ARENA_MAX": "2"},
}


def memory_mb() -> dict[str, float]:
    """This process's resident memory by kind, MB."""
    fields: dict[str, float] = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "RssAnon", "RssFile"):
            fields[name] = round(int(value.split()[0]) / 1024, 1)
    return fields


def child(texts: int, every: int, corpus: Path) -> None:
    """Runs in the child: load, embed, report."""
    from core.settings import Settings
    from retrieval.embedding import open_embedder

    samples: list[dict[str, Any]] = [{"texts": 0, "stage": "start", **memory_mb()}]
    settings = Settings()
    embedder = open_embedder(settings)
    samples.append({"texts": 0, "stage": "loaded", **memory_mb()})
    with gzip.open(corpus / "corpus.jsonl.gz", "rt") as lines:
        abstracts = [json.loads(line)["text"] for _, line in zip(range(texts), lines, strict=False)]
    batch = settings.embedding_batch_size
    for start in range(0, len(abstracts), batch):
        embedder.embed(abstracts[start : start + batch])
        done = min(start + batch, len(abstracts))
        if done // every != start // every or done == len(abstracts):
            samples.append({"texts": done, "stage": "embedding", **memory_mb()})
    print(json.dumps(samples))


def store_child(chunks: int, corpus: Path) -> None:
    """Runs in the child: the embedded store alone, filled with ``chunks`` chunks."""
    import tempfile

    import numpy as np

    from bench.search_latency import fill_store, make_chunks
    from retrieval.qdrant_edge import EdgeStore

    samples: list[dict[str, Any]] = [{"chunks": 0, "stage": "start", **memory_mb()}]
    texts = make_chunks(corpus, chunks, max_words=150, seed=14)
    vectors = np.random.default_rng(0).normal(size=(chunks, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    step = max(1, chunks // 5)
    with tempfile.TemporaryDirectory() as root:
        store = EdgeStore(Path(root), alias="memory")
        store.ensure_collection(dim=384, model="memory")
        samples.append({"chunks": 0, "stage": "opened", **memory_mb()})
        for start in range(0, chunks, step):
            end = start + step
            fill_store(store, texts[start:end], vectors[start:end], seed=start, first=start)
            samples.append({"chunks": min(chunks, start + step), "stage": "stored", **memory_mb()})
        store.close()
    print(json.dumps(samples))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--every", type=int, default=500)
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--store-chunks", type=int, default=100_000)
    parser.add_argument("--child", choices=["embed", "store"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "embed":
        child(args.texts, args.every, args.corpus)
        return
    if args.child == "store":
        store_child(args.store_chunks, args.corpus)
        return
    result: dict[str, Any] = {"bench": "memory", "texts": args.texts, "cpu_count": os.cpu_count()}
    runs: dict[str, tuple[str, dict[str, str]]] = {
        name: ("embed", env) for name, env in VARIANTS.items() if args.texts
    }
    if args.store_chunks:
        runs["embedded_store"] = ("store", {})
    for name, (kind, env) in runs.items():
        print(f"variant {name}", file=sys.stderr)
        out = subprocess.run(
            [sys.executable, "-m", "bench.memory", "--child", kind, *_passed(args)],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            check=True,
        )
        result[name] = json.loads(out.stdout.strip().splitlines()[-1])
    print(json.dumps(result))


def _passed(args: argparse.Namespace) -> list[str]:
    return [
        "--texts",
        str(args.texts),
        "--every",
        str(args.every),
        "--corpus",
        str(args.corpus),
        "--store-chunks",
        str(args.store_chunks),
    ]


if __name__ == "__main__":
    main()
