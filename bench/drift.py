"""Query drift replay (issue 19): does the drift alert fire when questions move to another
domain, and stay quiet when they do not?

    python -m bench.drift [--seeds 5] [--docs 5183] [--shift-after 100] [--json out.json]

The corpus: SciFact's abstracts (``../shared/eval/scifact-train``, title and the first
``--words`` words), embedded by the configured engine (``HEADWATER_EMBEDDING_*``; cached
under ``.cache/bench/``) and indexed, public, in the embedded store. Questions go through
the real ``Retriever`` (the configured search mode, hybrid by default) with the real
``DriftMonitor`` as its observer and the default policy (``HEADWATER_DRIFT_*``), and
the alert condition is the monitor's (the rule ``HeadwaterQueryDrift``'s thresholds,
before its ``for:``).

- In domain: SciFact's 809 training claims. Each seed shuffles them: the first
  ``reference_size`` form the reference, the rest are replayed; every question after the
  first full window is one check, and the false-alarm rate is the share of checks on
  which the alert condition held.
- Shift: a fresh monitor, the same reference, ``--shift-after`` more in-domain claims,
  then questions from MMLU (``../shared/eval/router/routellm_mmlu.jsonl.gz``: 57
  school and professional subjects, the question text without its answer choices,
  shuffled): the delay is the number of out-of-domain questions until the condition
  holds. ``--mix`` sets the share of out-of-domain questions after the shift (1.0: all).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gzip
import hashlib
import json
import math
import platform
import random
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from acl.filter import PermissionFilter
from acl.models import DocumentAcl, Principal
from core.settings import Settings
from retrieval.drift import DriftMonitor, DriftPolicy
from retrieval.embedding import Embedder, open_embedder
from retrieval.qdrant_edge import EdgeStore
from retrieval.query import SearchPolicy
from retrieval.records import DocumentFields, StoredChunk
from retrieval.schema import ChunkPoint, point_id
from retrieval.service import Retriever
from retrieval.sparse import LexicalEncoder

SCIFACT = Path("../shared/eval/scifact-train")
MMLU = Path("../shared/eval/router/routellm_mmlu.jsonl.gz")
CACHE = Path(".cache/bench")
TENANT = "bench"


def corpus_texts(folder: Path, *, docs: int, words: int) -> list[str]:
    texts = []
    with gzip.open(folder / "corpus.jsonl.gz", "rt") as lines:
        for line in lines:
            row = json.loads(line)
            text = f"{row['title']}. {row['text']}".split()
            texts.append(" ".join(text[:words]))
            if len(texts) == docs:
                break
    return texts


def in_domain_questions(folder: Path) -> list[str]:
    with (folder / "queries.jsonl").open() as lines:
        return [json.loads(line)["text"] for line in lines]


def out_of_domain_questions(path: Path, *, count: int, seed: int) -> list[str]:
    """MMLU questions without their answer choices, a shuffled sample."""
    questions = []
    with gzip.open(path, "rt") as lines:
        for line in lines:
            prompt = json.loads(line)["prompt"]
            questions.append(prompt.split("\nA.")[0].strip())
    random.Random(seed).shuffle(questions)
    return questions[:count]


def embed_cached(embedder: Embedder, texts: Sequence[str], name: str) -> np.ndarray:
    digest = hashlib.sha256("\n".join([embedder.model_name, *texts]).encode()).hexdigest()[:16]
    path = CACHE / f"drift-{name}-{digest}.npy"
    if path.exists():
        return np.load(path)
    vectors = np.asarray(embedder.embed(list(texts)), dtype=np.float32)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def build_store(root: Path, texts: Sequence[str], vectors: np.ndarray) -> EdgeStore:
    store = EdgeStore(root, alias="drift-bench")
    store.ensure_collection(dim=int(vectors.shape[1]), model="bench")
    lexical = LexicalEncoder()
    batch: list[ChunkPoint] = []
    for number, (text, vector) in enumerate(zip(texts, vectors, strict=True)):
        doc_id = f"scifact-{number}"
        document = DocumentFields(
            tenant=TENANT, doc_id=doc_id, version=1, acl=DocumentAcl(public=True)
        )
        batch.append(
            ChunkPoint(
                id=point_id(TENANT, doc_id, 0),
                vector=vector.tolist(),
                chunk=StoredChunk(document, 0, text),
                lexical=lexical.encode_document(text),
            )
        )
        if len(batch) == 1000 or number == len(texts) - 1:
            store.upsert(batch)
            batch = []
    return store


class Replay:
    """Questions through the real retriever with a monitor as its observer."""

    def __init__(
        self, store: EdgeStore, embedder: Embedder, settings: Settings, overrides: dict[str, float]
    ):
        self._store, self._embedder, self._settings = store, embedder, settings
        self._overrides = overrides
        self.permission = PermissionFilter.for_principal(Principal(tenant=TENANT, user_id="u"))
        self.observe_s: list[float] = []
        self.values: dict[str, list[float]] = {}

    def policy(self) -> DriftPolicy:
        s = self._settings
        policy = DriftPolicy(
            min_score=s.grounding_min_score,
            window=s.drift_window,
            reference_size=s.drift_reference_size,
        )
        return dataclasses.replace(policy, **self._overrides)

    async def run(
        self, monitor: DriftMonitor, questions: Sequence[tuple[str, np.ndarray]]
    ) -> list[bool]:
        """The alert condition after each question (each signal's value in ``values``)."""

        def observe(tenant: str, vector: Sequence[float], top: float | None) -> None:
            started = time.perf_counter()
            monitor.observe(tenant, vector, top)
            self.observe_s.append(time.perf_counter() - started)

        retriever = Retriever(
            store=self._store,
            embedder=self._embedder,
            collection="drift-bench",
            policy=SearchPolicy.from_settings(self._settings),
            observer=observe,
        )
        states = []
        for text, vector in questions:
            await retriever.retrieve(
                text,
                permission=self.permission,
                top_k=self._settings.retrieval_top_k,
                query_vector=vector.tolist(),
            )
            state = monitor.state(TENANT)
            states.append(state.alerting)
            for name, signal in state.signals.items():
                if signal.value is not None:
                    self.values.setdefault(name, []).append(signal.value)
        return states


def _values(monitor: DriftMonitor) -> dict[str, float | None]:
    state = monitor.state(TENANT)
    values = {
        name: None if s.value is None else round(s.value, 5) for name, s in state.signals.items()
    }
    values["no_answer_reference"] = state.no_answer_reference
    return values


def _first_signal(monitor: DriftMonitor) -> list[str]:
    return [name for name, s in monitor.state(TENANT).signals.items() if s.alerting]


async def replay_seed(
    replay: Replay,
    *,
    home: list[tuple[str, np.ndarray]],
    away: list[tuple[str, np.ndarray]],
    seed: int,
    shift_after: int,
    mix: float,
    trace: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    rng = random.Random(seed)
    policy = replay.policy()
    home = home[:]
    rng.shuffle(home)
    reference, rest = home[: policy.reference_size], home[policy.reference_size :]
    same = DriftMonitor(policy, dim=len(home[0][1]))
    await replay.run(same, reference)
    replay.values = {}
    states = await replay.run(same, rest)
    null_values = replay.values
    # Each signal has a value from the first full window on.
    reference_rate = same.state(TENANT).no_answer_reference
    null_trace = [
        {**dict(zip(null_values, values, strict=True)), "no_answer_reference": reference_rate}
        for values in zip(*null_values.values(), strict=True)
    ]
    replay.values = {}
    checks = states[policy.window - 1 :]
    shifted = DriftMonitor(policy, dim=len(home[0][1]))
    await replay.run(shifted, reference + rest[:shift_after])
    pool, tail = away[:], rest[shift_after:]
    rng.shuffle(pool)
    stream = []
    for question in pool:
        if mix < 1 and rng.random() > mix and tail:
            stream.append((tail.pop(), False))
        stream.append((question, True))
    delay = None
    signals: list[str] = []
    away_seen = 0
    shift_trace = []
    for question, is_away in stream:
        (alert,) = await replay.run(shifted, [question])
        away_seen += is_away
        shift_trace.append(_values(shifted))
        if alert and delay is None:
            delay, signals = away_seen, _first_signal(shifted)
        if delay is not None and trace is None:
            break
    if trace is not None:
        trace.append({"seed": seed, "same": null_trace, "shift": shift_trace})
    return {
        "seed": seed,
        "same_distribution_max": {k: round(max(v), 4) for k, v in null_values.items()},
        "same_distribution_p99": {
            k: round(float(np.quantile(v, 0.99)), 4) for k, v in null_values.items()
        },
        "at_detection": {k: round(v[-1], 4) for k, v in replay.values.items()},
        "same_distribution_checks": len(checks),
        "false_alarms": sum(checks),
        "shift_delay_questions": delay,
        "shift_signals": signals,
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    settings = Settings()
    embedder = open_embedder(settings)
    texts = corpus_texts(SCIFACT, docs=args.docs, words=args.words)
    corpus = embed_cached(embedder, texts, "corpus")
    home_texts = in_domain_questions(SCIFACT)
    away_texts = out_of_domain_questions(MMLU, count=args.away, seed=0)
    home = list(zip(home_texts, embed_cached(embedder, home_texts, "scifact"), strict=True))
    away = list(zip(away_texts, embed_cached(embedder, away_texts, "mmlu"), strict=True))
    with tempfile.TemporaryDirectory() as root:
        store = build_store(Path(root), texts, corpus)
        overrides = {
            name: value
            for name, value in (
                ("max_query_distance", args.max_distance),
                ("max_score_psi", args.max_psi),
                ("max_no_answer_increase", args.max_no_answer_increase),
            )
            if value is not None
        }
        replay = Replay(store, embedder, settings, overrides)
        traces: list[dict[str, Any]] | None = [] if args.traces else None
        runs = [
            await replay_seed(
                replay,
                home=home,
                away=away,
                seed=seed,
                shift_after=args.shift_after,
                mix=args.mix,
                trace=traces,
            )
            for seed in range(args.first_seed, args.first_seed + args.seeds)
        ]
        store.close()
    if args.traces and traces is not None:
        args.traces.write_text(json.dumps(traces) + "\n")
    checks = sum(r["same_distribution_checks"] for r in runs)
    alarms = sum(r["false_alarms"] for r in runs)
    delays = [r["shift_delay_questions"] for r in runs]
    found = [d for d in delays if d is not None]
    policy = replay.policy()
    return {
        "bench": "drift",
        "machine": platform.processor() or platform.machine(),
        "embedder": embedder.model_name,
        "search_mode": settings.retrieval_mode,
        "corpus_docs": len(texts),
        "policy": policy.__dict__,
        "in_domain_questions": len(home),
        "out_of_domain_questions": len(away),
        "seeds": list(range(args.first_seed, args.first_seed + args.seeds)),
        "mix": args.mix,
        "same_distribution": {
            "checks": checks,
            "false_alarms": alarms,
            "false_alarm_rate": alarms / checks if checks else None,
            "runs_with_any_alarm": sum(r["false_alarms"] > 0 for r in runs),
        },
        "shift": {
            "detected_runs": len(found),
            "delay_median": statistics.median(found) if found else None,
            "delay_max": max(found) if found else None,
            "delays": delays,
        },
        "observe_us_p50": round(statistics.median(replay.observe_s) * 1e6, 1),
        "runs": runs,
    }


SIGNALS = ("query_distance", "score_psi", "no_answer_increase")
# The least each threshold may be, whatever the tuning replays show. PSI's rule of thumb
# (0.25: a significant shift) is for large samples: over a window of 50 questions in 5
# bins its sampling noise alone reached 0.67 here, so it alerts from 1.0 (a confirming
# signal; the embedding distance is the fast one). An unanswered share that never moved
# in the tuning replays would otherwise alert on the first question more.
FLOORS = {"query_distance": 0.05, "score_psi": 1.0, "no_answer_increase": 0.2}


def _signal(values: dict[str, float | None], reference_rate: float, name: str) -> float:
    if name == "no_answer_increase":
        rate = values.get("no_answer_rate")
        return -1.0 if rate is None else rate - reference_rate
    value = values.get(name)
    return -1.0 if value is None else value


def analyse(traces: list[dict[str, Any]], *, tune: int, margin: float) -> dict[str, Any]:
    """Thresholds from the first ``tune`` seeds' same-distribution replays (their highest
    value of each signal, times ``margin``, rounded up to 0.01, at least its ``FLOORS``),
    judged on the others: false alarms on their same-distribution replays, delay on their
    shifts."""

    def reference_rate(run: dict[str, Any]) -> float:
        return float(run["same"][0]["no_answer_reference"])

    tuning, held_out = traces[:tune], traces[tune:]
    highest = {
        name: max(_signal(v, reference_rate(r), name) for r in tuning for v in r["same"])
        for name in SIGNALS
    }
    thresholds = {
        name: max(FLOORS[name], math.ceil(margin * highest[name] * 100) / 100) for name in SIGNALS
    }

    def alerting(values: dict[str, float | None], run: dict[str, Any]) -> bool:
        rate = reference_rate(run)
        return any(_signal(values, rate, n) > thresholds[n] for n in SIGNALS)

    checks = [alerting(v, r) for r in held_out for v in r["same"]]
    delays = []
    for run in held_out:
        delays.append(next((n + 1 for n, v in enumerate(run["shift"]) if alerting(v, run)), None))
    found = [d for d in delays if d is not None]
    return {
        "tuning_highest": {name: round(value, 4) for name, value in highest.items()},
        "thresholds": thresholds,
        "tuning_seeds": [r["seed"] for r in tuning],
        "held_out_seeds": [r["seed"] for r in held_out],
        "held_out_checks": len(checks),
        "held_out_false_alarms": sum(checks),
        "held_out_runs_with_any_alarm": sum(
            any(alerting(v, r) for v in r["same"]) for r in held_out
        ),
        "held_out_delays": delays,
        "held_out_delay_median": statistics.median(found) if found else None,
        "held_out_delay_max": max(found) if found else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--docs", type=int, default=5183, help="SciFact abstracts to index.")
    parser.add_argument("--words", type=int, default=120, help="Words of each abstract.")
    parser.add_argument("--away", type=int, default=400, help="MMLU questions to sample.")
    parser.add_argument("--shift-after", type=int, default=100)
    parser.add_argument("--mix", type=float, default=1.0)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--max-distance", type=float, help="Override the policy's threshold.")
    parser.add_argument("--max-psi", type=float)
    parser.add_argument("--max-no-answer-increase", type=float)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--traces", type=Path, help="Write every signal after every question (JSON) here."
    )
    parser.add_argument(
        "--analyse", type=Path, help="Only choose thresholds from a --traces file and judge them."
    )
    parser.add_argument("--tune-seeds", type=int, default=5)
    parser.add_argument("--margin", type=float, default=1.25)
    args = parser.parse_args()
    if args.analyse:
        traces = json.loads(args.analyse.read_text())
        print(json.dumps(analyse(traces, tune=args.tune_seeds, margin=args.margin), indent=2))
        return
    result = asyncio.run(main_async(args))
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
