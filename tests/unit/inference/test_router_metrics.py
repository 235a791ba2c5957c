"""The router metric code against hand-computed cases and RouteLLM's published files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from inference.router_data import load_outcomes
from inference.router_metrics import (
    apgr,
    bootstrap,
    cpt,
    metrics_of,
    oracle_scores,
    quality_curve,
    strong_share_at,
)
from inference.router_report import evaluate_scores

SHARED = Path(__file__).resolve().parents[4] / "shared" / "eval" / "router"

# Four prompts: only the strong model is right on #0, only the weak on #3, both on #1.
STRONG = np.array([1.0, 1.0, 0.0, 0.0])
WEAK = np.array([0.0, 1.0, 0.0, 1.0])


def test_the_curve_runs_from_weak_to_strong_in_score_order() -> None:
    curve = quality_curve(np.array([0.9, 0.5, 0.4, 0.1]), STRONG, WEAK)
    assert curve.tolist() == [0.5, 0.75, 0.75, 0.75, 0.5]


def test_tied_scores_give_the_expected_value_of_a_random_order() -> None:
    curve = quality_curve(np.zeros(4), STRONG, WEAK)
    assert curve == pytest.approx([0.5, 0.5, 0.5, 0.5, 0.5])
    gains = np.array([1.0, 1.0, 0.0, 0.0])
    tied = quality_curve(np.zeros(4), gains, np.zeros(4))
    assert tied == pytest.approx([0.0, 0.125, 0.25, 0.375, 0.5])


def test_a_perfect_ranking_on_a_rising_curve() -> None:
    strong = np.ones(10)
    weak = np.array([0.0] * 4 + [1.0] * 6)  # the strong model helps on four prompts
    perfect = metrics_of(oracle_scores(strong, weak), strong, weak)
    # PGR rises by 0.25 a prompt over the first 4 tenths and then stays at 1.
    assert perfect.cpt50 == pytest.approx(0.2)
    assert perfect.cpt80 == pytest.approx(0.32)
    # 95% of the strong mean (1.0) is 0.95: 3.5 prompts' worth of gain above 0.6.
    assert perfect.strong_share_at_95 == pytest.approx(0.35)
    assert perfect.apgr == pytest.approx(1 - 0.4 / 2)
    reversed_ = metrics_of(-oracle_scores(strong, weak), strong, weak)
    assert reversed_.apgr == pytest.approx(0.4 / 2)
    assert reversed_.cpt50 == pytest.approx(0.8)


def test_edges_of_cpt_and_the_95_percent_share() -> None:
    flat = np.array([0.7, 0.7, 0.7])
    assert apgr(flat) == 0.0 and cpt(flat, 0.5) == 0.0
    assert strong_share_at(np.array([0.96, 0.97, 1.0]), 0.95) == 0.0
    assert strong_share_at(np.array([0.0, 0.1, 0.2]), 0.95) == pytest.approx(0.95)


def test_a_random_router_scores_half_and_its_cpt_is_the_fraction() -> None:
    rng = np.random.default_rng(5)
    strong = (rng.random(20_000) < 0.8).astype(float)
    weak = (rng.random(20_000) < 0.6).astype(float)
    random = metrics_of(rng.random(20_000), strong, weak)
    assert random.apgr == pytest.approx(0.5, abs=0.03)
    assert random.cpt50 == pytest.approx(0.5, abs=0.05)
    assert random.cpt80 == pytest.approx(0.8, abs=0.05)


def test_bootstrap_intervals_hold_the_point_and_repeat_with_the_seed() -> None:
    rng = np.random.default_rng(1)
    strong, weak = rng.integers(0, 2, 500).astype(float), rng.integers(0, 2, 500).astype(float)
    scores = strong - weak + rng.normal(0, 1, 500)
    first = bootstrap(scores, strong, weak, rounds=50, seed=3)
    assert first == bootstrap(scores, strong, weak, rounds=50, seed=3)
    for interval in first.values():
        assert interval.low <= interval.value <= interval.high


def test_the_report_carries_router_random_and_oracle() -> None:
    rng = np.random.default_rng(2)
    strong, weak = rng.integers(0, 2, 300).astype(float), rng.integers(0, 2, 300).astype(float)
    report = evaluate_scores(oracle_scores(strong, weak), strong, weak, rounds=20).to_dict()
    for member in ("router", "random"):
        assert {"apgr", "cpt50", "cpt80", "strong_share_at_95", "ci"} <= report[member].keys()
    assert report["router"]["apgr"] == report["oracle"]["apgr"] > report["random"]["apgr"]


# PROVENANCE.md's table, computed from the files: (file, keep contaminated, rows,
# oracle CPT(50%), oracle CPT(80%), oracle share at 95%, random share at 95%).
PUBLISHED = [
    ("routellm_mmlu.jsonl.gz", True, 14_042, 0.0625, 0.100, 0.085, 0.678),
    ("routellm_mmlu.jsonl.gz", False, 14_037, 0.0625, 0.100, 0.085, 0.678),
    ("routellm_mtbench.jsonl.gz", True, 80, 0.0875, 0.175, 0.0875, 0.480),
    ("routellm_mtbench.jsonl.gz", False, 72, 0.083, 0.181, 0.083, 0.505),
]


@pytest.mark.skipif(not SHARED.is_dir(), reason="RouteLLM's outcome files are not here")
@pytest.mark.parametrize(("name", "keep", "rows", "c50", "c80", "s95", "random95"), PUBLISHED)
def test_oracle_and_random_figures_match_provenance(
    name: str, keep: bool, rows: int, c50: float, c80: float, s95: float, random95: float
) -> None:
    data = load_outcomes([SHARED / name], keep_contaminated=keep)
    assert len(data) == rows
    oracle = metrics_of(oracle_scores(data.strong, data.weak), data.strong, data.weak)
    tied = metrics_of(np.zeros(rows), data.strong, data.weak)  # a random router's mean
    # PROVENANCE.md reads the first whole cut (k / n) that reaches the target; RouteLLM's
    # CPT interpolates between cuts, which is what the code does: both agree at the cut.
    for interpolated, published in ((oracle.cpt50, c50), (oracle.cpt80, c80)):
        assert math.ceil(interpolated * rows - 1e-9) / rows == pytest.approx(published, abs=1e-3)
    at_cut = math.ceil(oracle.strong_share_at_95 * rows - 1e-9) / rows
    assert at_cut == pytest.approx(s95, abs=1e-3)
    assert tied.strong_share_at_95 == pytest.approx(random95, abs=1e-3)
    assert tied.apgr == pytest.approx(0.5) and tied.cpt50 == pytest.approx(0.5)
