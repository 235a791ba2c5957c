"""Speed and quality of the bf16 torch and int8 ONNX embedders against fp32 torch.

    python -m bench.embedding_quality                 # 1-3 minutes on 2 cores
    python -m bench.embedding_quality --passages 100  # quicker

Corpus: deterministic synthetic passages (20-250 words) of sentences drawn from a
shared vocabulary plus one or two of a dozen topics' words, and short queries about a
topic, so nearest neighbours are meaningful. Both embedders run in the same process on
the same inputs with the same batch size; throughput repeats alternate between them
(median of the repeats), so background load hits both alike.

Quality: cosine between the fp32 and the bf16 / int8 vector of each passage and query;
per query, recall@10 of the bf16 / int8 top-10 against the fp32 top-10 (each searched in
its own vectors), and whether both put the same passage first; and how far int8 vectors
move with their batch mates (batched vs one text per call). The bf16 engine is
measured only on CPUs with native bf16 (emulated bf16 is slower than fp32; the default
``HEADWATER_EMBEDDING_DTYPE=auto`` does not pick it there). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from retrieval.embedding import (
    Embedder,
    SentenceTransformerEmbedder,
    default_model_path,
    native_bf16,
)
from retrieval.onnx_embedding import OnnxInt8Embedder, cached_model_path, cpu_count

_COMMON = (
    "the a of to and in for on with by from at is are was be has have will can should "
    "team report update plan week month year process request change review note item "
    "system service group data time work result issue question answer owner status "
    "new next last current early late first final open closed shared internal"
)
COMMON = _COMMON.split()

_TOPICS = {
    "payroll": "salary payslip tax bonus overtime deduction pension payroll bank",
    "travel": "flight hotel visa itinerary mileage per-diem booking airport taxi",
    "security": "password phishing badge firewall breach encryption vpn token audit",
    "hiring": "candidate interview offer recruiter referral onboarding contract role",
    "facilities": "parking desk elevator heating cleaning visitor kitchen badge floor",
    "finance": "budget forecast invoice ledger expense quarter revenue margin audit",
    "engineering": "release deploy rollback latency outage kubernetes incident patch",
    "legal": "clause liability compliance gdpr retention signature counsel dispute",
    "sales": "pipeline quota lead discount renewal customer pricing forecast demo",
    "health": "insurance dentist sick leave wellness clinic therapy claim coverage",
    "learning": "course mentor workshop certificate training library conference",
    "it": "laptop monitor printer helpdesk ticket license software upgrade wifi",
}
TOPICS = {name: words.split() for name, words in _TOPICS.items()}


def _sentence(rng: random.Random, topics: Sequence[str], words: int) -> str:
    picks = [
        rng.choice(TOPICS[rng.choice(topics)]) if rng.random() < 0.3 else rng.choice(COMMON)
        for _ in range(words)
    ]
    return " ".join(picks).capitalize() + rng.choice([".", ".", ".", "?", ";"])


def corpus(*, passages: int, queries: int, seed: int) -> tuple[list[str], list[str]]:
    """``passages`` texts of 20-250 words and ``queries`` short questions, deterministic."""
    rng = random.Random(seed)
    names = sorted(TOPICS)
    texts: list[str] = []
    for _ in range(passages):
        topics = rng.sample(names, rng.choice([1, 1, 2]))
        target, sentences = rng.randint(20, 250), []
        while target > 0:
            length = min(target, rng.randint(6, 18))
            sentences.append(_sentence(rng, topics, length))
            target -= length
        texts.append(" ".join(sentences))
    asks = [
        _sentence(rng, [rng.choice(names)], rng.randint(4, 12)).rstrip(".;?") + "?"
        for _ in range(queries)
    ]
    return texts, asks


def throughput(
    embedders: dict[str, Embedder], texts: list[str], *, repeats: int
) -> dict[str, float]:
    """Passages per second, median of ``repeats`` runs alternating between embedders."""
    runs: dict[str, list[float]] = {name: [] for name in embedders}
    for embedder in embedders.values():
        embedder.embed(texts[:32])  # warm-up: allocations, lazy initialisation
    for _ in range(repeats):
        for name, embedder in embedders.items():
            started = time.perf_counter()
            embedder.embed(texts)
            runs[name].append(len(texts) / (time.perf_counter() - started))
    return {name: round(statistics.median(values), 1) for name, values in runs.items()}


def top_k(
    queries: npt.NDArray[np.float32], docs: npt.NDArray[np.float32], k: int
) -> list[list[int]]:
    scores = queries @ docs.T
    return [list(np.argsort(-row, kind="stable")[:k]) for row in scores]


def agreement(
    reference: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]],
    candidate: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]],
    *,
    k: int = 10,
) -> dict[str, float]:
    """Recall@k of the candidate's top-k against the reference's, and top-1 agreement."""
    want = top_k(reference[1], reference[0], k)
    got = top_k(candidate[1], candidate[0], k)
    recalls = [len(set(w) & set(g)) / k for w, g in zip(want, got, strict=True)]
    firsts = [w[0] == g[0] for w, g in zip(want, got, strict=True)]
    return {
        f"recall_at_{k}_mean": round(statistics.fmean(recalls), 4),
        f"recall_at_{k}_min": round(min(recalls), 4),
        "top1_agreement": round(sum(firsts) / len(firsts), 4),
    }


def _vectors(embedder: Embedder, texts: list[str]) -> npt.NDArray[np.float32]:
    return np.asarray(embedder.embed(texts), dtype=np.float32)


def _cosines(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> dict[str, float]:
    values = (a * b).sum(axis=1)
    return {"mean": round(float(values.mean()), 5), "min": round(float(values.min()), 5)}


def quality(
    fp32: Embedder, int8: Embedder, int8_alone: Embedder, texts: list[str], queries: list[str]
) -> dict[str, object]:
    """Cosines fp32 vs int8 (passages, queries, int8 batched vs one at a time) and retrieval."""
    ref = (_vectors(fp32, texts), _vectors(fp32, queries))
    got = (_vectors(int8, texts), _vectors(int8, queries))
    return {
        "cosine_fp32_vs_int8": {
            "passages": _cosines(ref[0], got[0]),
            "queries": _cosines(ref[1], got[1]),
        },
        "cosine_int8_batched_vs_alone": _cosines(got[0], _vectors(int8_alone, texts)),
        "retrieval_int8_vs_fp32": agreement(ref, got),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--passages", type=int, default=300)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--cache-dir", type=Path, default=None, help="int8 model cache (default: a temp dir)"
    )
    args = parser.parse_args()

    texts, queries = corpus(passages=args.passages, queries=args.queries, seed=args.seed)
    name, batch_size = "all-MiniLM-L6-v2", args.batch_size
    fp32 = SentenceTransformerEmbedder(None, model_name=name, batch_size=batch_size)
    with tempfile.TemporaryDirectory() as scratch:
        cache_dir = args.cache_dir or Path(scratch)
        cached = cached_model_path(default_model_path(), cache_dir).is_file()
        started = time.perf_counter()
        int8 = OnnxInt8Embedder(None, model_name=name, cache_dir=cache_dir, batch_size=batch_size)
        ready_s = time.perf_counter() - started
        int8_alone = OnnxInt8Embedder(None, model_name=name, cache_dir=cache_dir, batch_size=1)
    engines: dict[str, Embedder] = {"torch_fp32": fp32, "onnx_int8": int8}
    bf16 = None
    if native_bf16():
        bf16 = SentenceTransformerEmbedder(
            None, model_name=name, batch_size=batch_size, dtype="bfloat16"
        )
        engines["torch_bf16"] = bf16
    speed = throughput(engines, texts, repeats=args.repeats)
    bf16_quality: dict[str, object] = {}
    if bf16 is not None:
        ref = (_vectors(fp32, texts), _vectors(fp32, queries))
        got = (_vectors(bf16, texts), _vectors(bf16, queries))
        bf16_quality = {
            "cosine_fp32_vs_bf16": {
                "passages": _cosines(ref[0], got[0]),
                "queries": _cosines(ref[1], got[1]),
            },
            "retrieval_bf16_vs_fp32": agreement(ref, got),
        }
    words = [len(text.split()) for text in texts]
    report = {
        "passages": len(texts),
        "queries": len(queries),
        "passage_words": {
            "min": min(words),
            "mean": round(statistics.fmean(words), 1),
            "max": max(words),
        },
        "batch_size": batch_size,
        "repeats": args.repeats,
        "cpus": cpu_count(),
        "passages_per_s": speed,
        "speedup": {
            name: round(value / speed["torch_fp32"], 2)
            for name, value in speed.items()
            if name != "torch_fp32"
        },
        "int8_model": {"from_cache": cached, "ready_s": round(ready_s, 1)},
        **quality(fp32, int8, int8_alone, texts, queries),
        **bf16_quality,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
