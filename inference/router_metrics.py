"""RouteLLM's router metrics, computed exactly over every cut of a ranking.

A router ranks prompts by its score; sending the top ``k`` of ``n`` to the strong model
and the rest to the weak one gives a quality (the mean grade received) at strong-call
share ``k / n``. Over all ``k`` this is the router's quality curve, from the weak
model's mean (k = 0) to the strong model's (k = n). Prompts with equal scores are
sent in an arbitrary order, so within a tie the curve is the straight line between the
tie's ends (the expected value of a random tie-break).

- PGR (performance gap recovered) at a share: ``(quality - weak) / (strong - weak)``.
- APGR: the area under PGR against the strong-call share in [0, 1]. RouteLLM
  (``routellm/evals/evaluate.py``) takes the trapezoid area of the accuracy curve at ten
  thresholds and normalises it between the weak and strong areas; this is the same
  quantity on the full curve. A random router scores 0.5.
- CPT(x): the strong-call share at which the curve first recovers ``x`` of the gap, by
  linear interpolation between cuts (RouteLLM's ``np.interp``, which assumes a rising
  curve; the first crossing is the same on one and defined on any). Random: x.
- Strong share at 95%: CPT at the gap fraction where quality reaches 95% of the strong
  model's mean (0 when the weak model already does).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
CURVE_SHARES: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def quality_curve(scores: Floats, strong: Floats, weak: Floats) -> Floats:
    """Mean quality after sending the top ``k`` scores to the strong model, k = 0..n."""
    order = np.argsort(-scores, kind="stable")
    gains = (strong - weak)[order]
    ranked = scores[order]
    # Ties: every member of a tie group gets the group's mean gain (random tie-break).
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
    sums = np.add.reduceat(gains, starts)
    sizes = np.diff(np.r_[starts, len(gains)])
    gains = np.repeat(sums / sizes, sizes)
    n = len(scores)
    result: Floats = (weak.sum() + np.r_[0.0, np.cumsum(gains)]) / n
    return result


def apgr(curve: Floats) -> float:
    """Average performance gap recovered: area under PGR over the share in [0, 1]."""
    low, high = curve[0], curve[-1]
    if high == low:
        return 0.0
    pgr = (curve - low) / (high - low)
    shares = np.linspace(0.0, 1.0, len(curve))
    return float(np.sum((pgr[1:] + pgr[:-1]) * np.diff(shares)) / 2.0)


def cpt(curve: Floats, gap_fraction: float) -> float:
    """Strong-call share needed to first recover ``gap_fraction`` of the weak→strong gap."""
    low, high = curve[0], curve[-1]
    target = low + gap_fraction * (high - low)
    return share_reaching(curve, target)


def share_reaching(curve: Floats, target: float) -> float:
    """The first strong-call share at which the (interpolated) curve reaches ``target``."""
    n = len(curve) - 1
    if curve[0] >= target:
        return 0.0
    reached = np.flatnonzero(curve >= target)
    if len(reached) == 0:
        return 1.0
    k = int(reached[0])
    before, after = curve[k - 1], curve[k]
    return float((k - 1 + (target - before) / (after - before)) / n)


def strong_share_at(curve: Floats, fraction_of_strong: float = 0.95) -> float:
    """Strong-call share needed for ``fraction_of_strong`` of the strong model's mean."""
    return share_reaching(curve, fraction_of_strong * curve[-1])


@dataclass(frozen=True)
class RouterMetrics:
    """One router's figures on one set of prompts (shares and APGR as fractions)."""

    apgr: float
    cpt50: float
    cpt80: float
    strong_share_at_95: float
    quality_at: dict[float, float]  # mean quality at each share of CURVE_SHARES


def metrics_of(scores: Floats, strong: Floats, weak: Floats) -> RouterMetrics:
    """The figures of the ranking ``scores`` on prompts graded ``strong`` and ``weak``."""
    curve = quality_curve(scores, strong, weak)
    n = len(scores)
    return RouterMetrics(
        apgr=apgr(curve),
        cpt50=cpt(curve, 0.5),
        cpt80=cpt(curve, 0.8),
        strong_share_at_95=strong_share_at(curve, 0.95),
        quality_at={share: float(curve[round(share * n)]) for share in CURVE_SHARES},
    )


@dataclass(frozen=True)
class Interval:
    """A point estimate and its bootstrap percentile interval."""

    value: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        return {"value": self.value, "ci_low": self.low, "ci_high": self.high}


SCALARS: tuple[str, ...] = ("apgr", "cpt50", "cpt80", "strong_share_at_95")


def bootstrap(
    scores: Floats,
    strong: Floats,
    weak: Floats,
    *,
    rounds: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Interval]:
    """Each scalar of :class:`RouterMetrics` with a percentile interval over ``rounds``
    resamples of the prompts (with replacement); the same seed draws the same resamples,
    so two routers bootstrapped with one seed are compared on the same draws."""
    point = metrics_of(scores, strong, weak)
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {name: [] for name in SCALARS}
    for _ in range(rounds):
        pick = rng.integers(0, len(scores), len(scores))
        sample = metrics_of(scores[pick], strong[pick], weak[pick])
        for name in SCALARS:
            draws[name].append(getattr(sample, name))
    tail = (1.0 - confidence) / 2.0 * 100.0
    return {
        name: Interval(
            getattr(point, name),
            float(np.percentile(draws[name], tail)),
            float(np.percentile(draws[name], 100.0 - tail)),
        )
        for name in SCALARS
    }


def oracle_scores(strong: Floats, weak: Floats) -> Floats:
    """The scores of a router that knows the grades: the strong model's gain."""
    result: Floats = strong - weak
    return result
