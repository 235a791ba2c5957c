"""Filtered search latency at scale: dense and hybrid, embedded engine and Qdrant server.

    python -m bench.search_latency [--chunks 100000] [--runs 5] [--queries 300]
    python -m bench.search_latency --stores embedded,server,cluster   # issue 20

``--stores``: ``embedded`` (qdrant-edge in this process), ``server`` (one Qdrant node,
``../shared/bin/qdrant``) and ``cluster`` (three nodes on loopback, the collection in 3
shards of 2 copies, asked through the adapter with every node's URL), measured one after
the other in the same run on the same chunks, queries and principals. A server is
measured once its optimizer has finished indexing (the collection is green). Qdrant 1.18
cannot scope IDF to the caller's readable set, so the adapter serves sparse and hybrid
search dense there: only ``dense`` is measured on a server.

The corpus: chunk-sized pieces (runs of consecutive sentences, ``--words`` words at
most) cut from SciFact's abstracts (``--corpus``, BEIR format), reused round-robin when
more chunks are asked for than the abstracts hold (each piece then starts at a random
sentence, so pieces repeat: 38,814 distinct among 100,000; a repeat is embedded once).
Every chunk gets its BM25 terms, as the ingest writer stores them, and a real embedding
from the configured engine (``HEADWATER_EMBEDDING_*``) of its first ``--embed-words``
words (0: all), cached under ``.cache/bench/`` so a rerun skips it. Embedding whole
chunks would take an hour on two cores, and the search cost does not depend on how much
text made a vector (the embedded engine scans a caller's visible points exactly).

ACLs: one tenant, 50 groups; each chunk is readable by 1 to 3 of them, principals are
members of 2 to 4. Queries are SciFact's questions, each asked by the next principal,
through ``VectorStore.search`` with that principal's permission filter (the query's
embedding is computed beforehand: this measures the store). Each run times every query
in each mode after one warm-up pass; the JSON gives each run's p50/p95 and their median.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import platform
import random
import re
import statistics
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import Progress

from acl.filter import PermissionFilter
from acl.models import DocumentAcl, Principal
from bench.harness import rss_mb
from core.settings import Settings
from deploy.process import ManagedProcess, free_port
from deploy.scale import QdrantCluster
from deploy.split import qdrant_binary, qdrant_process
from retrieval.embedding import Embedder, open_embedder
from retrieval.qdrant import QdrantServerStore
from retrieval.qdrant_edge import EdgeStore
from retrieval.query import SearchMode, SearchPolicy, SearchQuery
from retrieval.records import DocumentFields, StoredChunk
from retrieval.schema import ChunkPoint, point_id
from retrieval.sparse import LexicalEncoder
from retrieval.store import VectorStore

CORPUS = Path("../shared/eval/scifact-train")
CACHE = Path(".cache/bench")
GROUPS = [f"g{i:02d}" for i in range(50)]
PRINCIPALS = 20
MODES: tuple[SearchMode, ...] = ("dense", "hybrid", "sparse")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9])")


def _sentences(corpus: Path) -> Iterator[list[str]]:
    with gzip.open(corpus / "corpus.jsonl.gz", "rt") as lines:
        for line in lines:
            doc = json.loads(line)
            yield [s for s in _SENTENCE_END.split(doc["text"]) if s.strip()]


def make_chunks(corpus: Path, count: int, *, max_words: int, seed: int) -> list[str]:
    """``count`` pieces of consecutive sentences, each at most about ``max_words`` words."""
    abstracts = [doc for doc in _sentences(corpus) if doc]
    rng = random.Random(seed)
    chunks: list[str] = []
    while len(chunks) < count:
        sentences = abstracts[len(chunks) % len(abstracts)]
        # Later passes over the abstracts start at another sentence: new pieces.
        start = 0 if len(chunks) < len(abstracts) else rng.randrange(len(sentences))
        words: list[str] = []
        for sentence in sentences[start:] + sentences[:start]:
            if words and len(words) + len(sentence.split()) > max_words:
                break
            words.extend(sentence.split())
        chunks.append(" ".join(words[: max_words * 2]))
    return chunks


def embed_cached(embedder: Embedder, texts: Sequence[str], label: str) -> np.ndarray:
    """Embeddings of ``texts``, cached by model and content; a progress bar while computing."""
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    path = CACHE / f"{label}-{embedder.model_name}-{len(texts)}-{digest}.npy"
    if path.exists():
        cached: np.ndarray = np.load(path)
        return cached
    unique = list(dict.fromkeys(texts))  # a repeated piece is embedded once
    batch = 256
    parts: list[np.ndarray] = []
    with Progress() as progress:
        task = progress.add_task(f"embedding {len(unique)} {label}", total=len(unique))
        for start in range(0, len(unique), batch):
            part = embedder.embed(unique[start : start + batch])
            parts.append(np.asarray(part, dtype=np.float32))
            progress.advance(task, len(part))
    row = {text: number for number, text in enumerate(unique)}
    vectors = np.concatenate(parts)[[row[text] for text in texts]]
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def _acl(rng: random.Random) -> DocumentAcl:
    return DocumentAcl(groups=tuple(rng.sample(GROUPS, rng.randint(1, 3))))


def fill_store(
    store: VectorStore, texts: Sequence[str], vectors: np.ndarray, seed: int, *, first: int = 0
) -> None:
    """Every chunk into ``store`` (its collection open), with its ACL and BM25 terms;
    the chunks are documents ``doc-{first}`` onwards."""
    lexical, rng = LexicalEncoder(), random.Random(seed)
    batch: list[ChunkPoint] = []
    with Progress() as progress:
        task = progress.add_task(f"indexing {len(texts)} chunks", total=len(texts))
        for number, (text, vector) in enumerate(zip(texts, vectors, strict=True)):
            doc_id = f"doc-{first + number}"
            document = DocumentFields(tenant="bench", doc_id=doc_id, version=1, acl=_acl(rng))
            batch.append(
                ChunkPoint(
                    id=point_id("bench", doc_id, 0),
                    vector=vector.tolist(),
                    chunk=StoredChunk(document, 0, text),
                    lexical=lexical.encode_document(text),
                )
            )
            if len(batch) == 1000 or number == len(texts) - 1:
                store.upsert(batch)
                progress.advance(task, len(batch))
                batch = []


def build_store(root: Path, texts: Sequence[str], vectors: np.ndarray, seed: int) -> EdgeStore:
    """The embedded store holding every chunk, with its ACL and BM25 terms."""
    store = EdgeStore(root, alias="bench")
    store.ensure_collection(dim=int(vectors.shape[1]), model="bench")
    fill_store(store, texts, vectors, seed)
    return store


@contextmanager
def server_store(
    kind: str, root: Path, dim: int
) -> Iterator[tuple[QdrantServerStore, list[ManagedProcess]]]:
    """A fresh Qdrant server (``server``: one node) or cluster (``cluster``: three nodes,
    3 shards of 2 copies) under ``root``, its collection open; stopped on exit."""
    if kind == "server":
        port = free_port()
        process = qdrant_process(
            binary=qdrant_binary(),
            http_port=port,
            grpc_port=free_port(),
            data_dir=root / "qdrant",
            log_path=root / "qdrant.log",
        )
        process.start()
        stop, processes = process.stop, [process]
        process.wait_ready(60)
        url, shards, replicas = f"http://127.0.0.1:{port}", 1, 1
    else:
        cluster = QdrantCluster(root, nodes=3)
        stop, processes = cluster.stop, cluster.processes
        url, shards, replicas = ",".join(cluster.start()), 3, 2
    try:
        store = QdrantServerStore.connect(
            url, api_key=None, alias="bench", shards=shards, replicas=replicas, timeout_s=60
        )
        store.ensure_collection(dim=dim, model="bench")
        yield store, processes
        store.close()
    finally:
        stop()


def wait_green(store: QdrantServerStore, timeout_s: float = 1800) -> float:
    """Seconds until every node says the collection is green (its optimizer is done)."""
    started = time.monotonic()
    urls = list(store.nodes())
    while time.monotonic() - started < timeout_s:
        states = set()
        for url in urls:
            with urllib.request.urlopen(f"{url}/collections/{store.collection}") as response:  # noqa: S310
                states.add(json.load(response)["result"]["status"])
        if states == {"green"}:
            break
        time.sleep(2)
    return time.monotonic() - started


def _principals(seed: int) -> list[PermissionFilter]:
    rng = random.Random(seed + 1)
    return [
        PermissionFilter.for_principal(
            Principal(
                tenant="bench", user_id=f"u{i}", groups=tuple(rng.sample(GROUPS, 4)[: 2 + i % 3])
            )
        )
        for i in range(PRINCIPALS)
    ]


def time_mode(
    store: VectorStore,
    queries: Sequence[SearchQuery],
    permissions: Sequence[PermissionFilter],
    *,
    top_k: int,
) -> list[float]:
    """Milliseconds of each query's filtered search, the i-th asked by principal i mod n."""
    timings = []
    for number, query in enumerate(queries):
        permission = permissions[number % len(permissions)]
        start = time.perf_counter()
        store.search(query, permission=permission, limit=top_k)
        timings.append((time.perf_counter() - start) * 1000)
    return timings


def _percentiles(timings: Sequence[float]) -> dict[str, float]:
    p50, p95 = np.percentile(timings, [50, 95])
    return {"p50_ms": round(float(p50), 2), "p95_ms": round(float(p95), 2)}


def run_modes(
    store: VectorStore,
    queries: dict[SearchMode, list[SearchQuery]],
    args: argparse.Namespace,
    *,
    modes: Sequence[SearchMode] = MODES,
) -> dict[str, Any]:
    permissions = _principals(args.seed)
    per_run: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
    for mode in modes:  # warm-up: first touches of the payload indexes and the pages
        time_mode(store, queries[mode], permissions, top_k=args.top_k)
    for _ in range(args.runs):
        for mode in modes:
            timings = time_mode(store, queries[mode], permissions, top_k=args.top_k)
            per_run[mode].append(_percentiles(timings))
    return {
        mode: {
            "p50_ms": statistics.median(r["p50_ms"] for r in runs),
            "p95_ms": statistics.median(r["p95_ms"] for r in runs),
            "runs": runs,
        }
        for mode, runs in per_run.items()
    }


def _queries(corpus: Path, embedder: Embedder, count: int) -> dict[SearchMode, list[SearchQuery]]:
    with open(corpus / "queries.jsonl") as lines:
        texts = [json.loads(line)["text"] for line in lines][:count]
    vectors = embed_cached(embedder, texts, "queries")
    lexical, policy = LexicalEncoder(), SearchPolicy()
    return {
        mode: [
            SearchQuery(
                vector.tolist(),
                lexical=None if mode == "dense" else lexical.encode_query(text),
                mode=mode,
                fusion=policy.fusion,
                candidates=policy.candidates,
            )
            for text, vector in zip(texts, vectors, strict=True)
        ]
        for mode in MODES
    }


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--top-k", type=int, default=Settings().retrieval_top_k)
    parser.add_argument("--words", type=int, default=150, help="words per chunk at most")
    parser.add_argument("--embed-words", type=int, default=48, help="words embedded; 0: all")
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument(
        "--stores",
        default="embedded",
        help="comma-separated: embedded, server (one Qdrant node), cluster (three nodes)",
    )
    args = parser.parse_args()
    args.stores = [store.strip() for store in args.stores.split(",") if store.strip()]
    unknown = set(args.stores) - {"embedded", "server", "cluster"}
    if unknown:
        parser.error(f"unknown --stores {sorted(unknown)}: use embedded, server, cluster")
    return args


def measure_store(
    kind: str,
    root: Path,
    texts: Sequence[str],
    vectors: np.ndarray,
    queries: dict[SearchMode, list[SearchQuery]],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Build ``kind``'s store under ``root`` and time every mode it serves."""
    started = time.perf_counter()
    if kind == "embedded":
        store = build_store(root, texts, vectors, args.seed)
        try:
            build_s = time.perf_counter() - started
            return {"index_build_s": round(build_s, 1), **run_modes(store, queries, args)}
        finally:
            store.close()
    with server_store(kind, root, int(vectors.shape[1])) as (server, processes):
        fill_store(server, texts, vectors, args.seed)
        upsert_s = time.perf_counter() - started
        optimize_s = wait_green(server)
        modes: Sequence[SearchMode] = MODES if server.lexical else ("dense",)
        timed = run_modes(server, queries, args, modes=modes)
        return {
            "index_build_s": round(upsert_s, 1),
            "optimize_s": round(optimize_s, 1),
            # Each node's resident memory holding its part of the chunks, after the runs.
            "rss_mb": {p.name: rss_mb(p.pid) for p in processes if p.pid is not None},
            **timed,
        }


def main() -> None:
    args = _parse()
    embedder = open_embedder(Settings())
    texts = make_chunks(args.corpus, args.chunks, max_words=args.words, seed=args.seed)
    heads = [" ".join(t.split()[: args.embed_words]) if args.embed_words else t for t in texts]
    vectors = embed_cached(embedder, heads, "chunks")
    queries = _queries(args.corpus, embedder, args.queries)
    measured: dict[str, Any] = {}
    for kind in args.stores:
        CACHE.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=CACHE) as root:
            measured[kind] = measure_store(kind, Path(root), texts, vectors, queries, args)
    modes = measured[args.stores[0]] if len(args.stores) == 1 else {"stores": measured}
    result = {
        "bench": "search_latency",
        "chunks": len(texts),
        "words_per_chunk": round(statistics.mean(len(t.split()) for t in texts), 1),
        "embedded_words": args.embed_words or "all",
        "groups": len(GROUPS),
        "principals": PRINCIPALS,
        "queries": len(queries["dense"]),
        "top_k": args.top_k,
        "runs": args.runs,
        "policy": {"fusion": SearchPolicy().fusion, "candidates": SearchPolicy().candidates},
        "embedding_model": embedder.model_name,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
        **modes,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
