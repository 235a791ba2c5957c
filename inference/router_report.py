"""A router's evaluation on labelled outcomes: its figures, a random router's from the
same run, and the oracle's, each with bootstrap confidence intervals.

What ``headwater router eval`` prints. The random router is its expected value: every
prompt gets the same score, and a tie is a random order (``quality_curve``), so its
curve is the straight line from weak to strong. Both routers are bootstrapped over the
same resamples of the prompts, so their intervals are comparable (random's APGR and CPT
are 0.5 and x on every resample, so only its 95% share has a width). The oracle knows
the grades (it ranks by the strong model's gain): the ceiling, shown without interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from inference.router_metrics import (
    CURVE_SHARES,
    SCALARS,
    Floats,
    Interval,
    RouterMetrics,
    bootstrap,
    metrics_of,
    oracle_scores,
)


@dataclass(frozen=True)
class PolicyFigures:
    """One policy's figures with their intervals."""

    metrics: RouterMetrics
    intervals: dict[str, Interval]

    def to_dict(self) -> dict[str, Any]:
        """``apgr``, ``cpt50``, ``cpt80``, ``strong_share_at_95`` (fractions), ``ci`` and
        ``quality_at`` (mean quality at strong-call shares 0, 0.1 .. 1)."""
        return {
            **{name: round(getattr(self.metrics, name), 4) for name in SCALARS},
            "ci": {
                name: [round(self.intervals[name].low, 4), round(self.intervals[name].high, 4)]
                for name in self.intervals
            },
            "quality_at": {f"{k:.1f}": round(v, 4) for k, v in self.metrics.quality_at.items()},
        }


@dataclass(frozen=True)
class RouterReport:
    """The figures of one router on one set of graded prompts."""

    prompts: int
    strong_mean: float
    weak_mean: float
    router: PolicyFigures
    random: PolicyFigures
    oracle: RouterMetrics
    rounds: int
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        """One JSON-ready object (what ``--json`` prints, less the run's labels)."""
        return {
            "prompts": self.prompts,
            "strong_mean": round(self.strong_mean, 4),
            "weak_mean": round(self.weak_mean, 4),
            "router": self.router.to_dict(),
            "random": self.random.to_dict(),
            "oracle": {name: round(getattr(self.oracle, name), 4) for name in SCALARS},
            "bootstrap": {"rounds": self.rounds, "confidence": self.confidence},
        }


def evaluate_scores(
    scores: Floats,
    strong: Floats,
    weak: Floats,
    *,
    rounds: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> RouterReport:
    """The report of the ranking ``scores`` on prompts graded ``strong`` and ``weak``."""
    if not len(scores) == len(strong) == len(weak) or len(scores) == 0:
        raise ValueError("scores and grades must be non-empty and of one length")
    random_scores = np.zeros(len(scores))  # all tied: the expected random order

    def figures(ranking: Floats) -> PolicyFigures:
        return PolicyFigures(
            metrics_of(ranking, strong, weak),
            bootstrap(ranking, strong, weak, rounds=rounds, confidence=confidence, seed=seed),
        )

    return RouterReport(
        prompts=len(scores),
        strong_mean=float(strong.mean()),
        weak_mean=float(weak.mean()),
        router=figures(scores),
        random=figures(random_scores),
        oracle=metrics_of(oracle_scores(strong, weak), strong, weak),
        rounds=rounds,
        confidence=confidence,
    )


def report_lines(report: RouterReport) -> list[str]:
    """A plain-text rendering: the curve at fixed shares, then the figures with CIs."""
    lines = [
        f"{report.prompts} prompts; strong mean {report.strong_mean:.4f}, "
        f"weak mean {report.weak_mean:.4f}; {report.confidence:.0%} bootstrap intervals "
        f"over {report.rounds} resamples",
        "strong-call share  " + "  ".join(f"{s:>6.1f}" for s in CURVE_SHARES),
    ]
    for name, figures in (("router", report.router), ("random", report.random)):
        values = figures.metrics.quality_at.values()
        lines.append(f"quality, {name:<8}  " + "  ".join(f"{v:>6.3f}" for v in values))
    lines.append(f"{'':<18}{'router':>26}{'random':>26}{'oracle':>10}")
    for name in SCALARS:
        row = f"{name:<18}"
        for figures in (report.router, report.random):
            i = figures.intervals[name]
            row += f"{i.value:>10.4f} [{i.low:.4f}, {i.high:.4f}]"
        lines.append(row + f"{getattr(report.oracle, name):>10.4f}")
    return lines
