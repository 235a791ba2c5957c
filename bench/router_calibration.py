"""Out-of-sample calibration of ``model: auto``: the realised large share of a 10,000
request replay against each target share, before and after a shift in the prompt mix.

    python -m bench.router_calibration [--data FILE] [--window N] [--requests N]

Requests are drawn (seeded, with replacement) from the MMLU prompts of the router's
test split, which neither the router nor any calibrator has seen: a fresh
``AutoRouter`` per target starts cold (its first 20 decisions use the initial threshold)
and is measured from its first request, never warmed on the replayed prompts. Two replays
per target, each with a shift halfway: non-STEM subjects (humanities, social sciences,
medicine, business) then STEM ones, and the reverse. The router scores STEM prompts
lower (Mixtral trails GPT-4 less there), so after the shift the scores are judged
against a threshold learned on the old mix until the window has turned over: the share
drops in the first order and jumps in the second.
Each request carries its prompt's embedding (as retrieval would pass it) and no
retrieval signals. Prints one JSON object; exits 1 when a half misses a target by more
than 2 points.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from core.settings import Settings
from headwater.router_cli import DEFAULT_CACHE, embed_outcomes
from inference.router_data import OutcomeSet, load_outcomes, split_of
from inference.scoring import AutoRouter, LearnedScorer, RouteSignals

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared/eval/router/routellm_mmlu.jsonl.gz"
TARGETS = (0.1, 0.25, 0.5)
TOLERANCE = 0.02
_STEM = (
    "math", "physics", "chemistry", "computer", "engineering", "statistics", "algebra",
    "astronomy", "machine_learning", "electrical", "biology", "anatomy", "genetics",
)  # fmt: skip


def is_stem(domain: str) -> bool:
    """Whether an MMLU subject is a STEM one (by its name)."""
    return any(word in domain for word in _STEM)


def replay_order(
    data: OutcomeSet, *, requests: int, seed: int, stem_first: bool = False
) -> list[int]:
    """Row indices of the replay: non-STEM draws then STEM draws (or the reverse)."""
    stem = np.array([is_stem(d) for d in data.domains])
    rng = np.random.default_rng(seed)
    groups = (stem, ~stem) if stem_first else (~stem, stem)
    first = rng.choice(np.flatnonzero(groups[0]), requests // 2)
    second = rng.choice(np.flatnonzero(groups[1]), requests - requests // 2)
    return [int(i) for i in np.r_[first, second]]


def replay(
    signals: list[RouteSignals], order: list[int], *, target: float, window: int
) -> list[bool]:
    """Go-large decisions of a cold router over ``order``."""
    router = AutoRouter(target, window, scorer=LearnedScorer())
    return [router.decide(signals[i]).tier == "large" for i in order]


def measure(
    signals: list[RouteSignals], order: list[int], *, target: float, window: int
) -> dict[str, float | bool]:
    """Realised large shares of one replay: each half, overall, the worst 500 in a row."""
    large = replay(signals, order, target=target, window=window)
    half = len(order) // 2
    before, after = float(np.mean(large[:half])), float(np.mean(large[half:]))
    runs = np.convolve(np.array(large, dtype=float), np.ones(500) / 500, mode="valid")
    return {
        "target": target,
        "share_before_shift": round(before, 4),
        "share_after_shift": round(after, 4),
        "share_overall": round(float(np.mean(large)), 4),
        "worst_500_request_share": round(float(runs[np.argmax(abs(runs - target))]), 4),
        "within_2_points": abs(before - target) <= TOLERANCE and abs(after - target) <= TOLERANCE,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--window", type=int, default=None, help="default: the setting")
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    settings = Settings()
    window = args.window or settings.router_window
    everything = load_outcomes([args.data])
    vectors = embed_outcomes(everything, settings=settings, cache_dir=DEFAULT_CACHE)
    keep = np.array([split_of(p) == "test" for p in everything.prompts])
    data, vectors = everything.subset(keep), vectors[keep]
    signals = [
        RouteSignals.from_messages([("user", p)], embedding=v.tolist())
        for p, v in zip(data.prompts, vectors, strict=True)
    ]
    results, ok = [], True
    for stem_first in (False, True):
        order = replay_order(data, requests=args.requests, seed=args.seed, stem_first=stem_first)
        shift = "STEM, then non-STEM" if stem_first else "non-STEM, then STEM"
        for target in TARGETS:
            row = measure(signals, order, target=target, window=window)
            ok = ok and bool(row["within_2_points"])
            results.append({"shift": shift, **row})
    report = {
        "requests": args.requests,
        "test_prompts": len(data),
        "window": window,
        "replays": results,
        "passed": ok,
    }
    print(json.dumps(report))  # noqa: T201
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
