"""The online threshold of ``model: auto``: a quantile of recent scores, so that about
a configured share of requests goes to the large tier whatever the scores look like.

Per-replica state: each API replica (each ``AutoRouter``) keeps its own last
``HEADWATER_ROUTER_WINDOW`` scores (500 by default; about 20 KB of Python floats) in memory and
nothing else; a restarted replica starts cold (the initial threshold for its first 20
requests, then the quantile of what it has seen). Nothing is shared between replicas:
behind a load balancer each sees a sample of the same traffic, so each holds the share.
Out of sample, with the prompt mix shifting halfway, a 10,000-request replay keeps the
realised share within 2 points of 0.1, 0.25 and 0.5 on both sides of the shift with the
default window (``python -m bench.router_calibration``; BENCHMARKS.md, issue 18).
"""

from __future__ import annotations

import bisect
from collections import deque


class ShareCalibrator:
    """Chooses the threshold so that about ``target_large_share`` of scores go large.

    The threshold is the ``1 - target`` quantile of the last ``window`` scores, so the
    share follows the target whatever the score distribution is, and follows it again
    after the traffic changes. Not thread-safe: one calibrator per event loop (each
    API replica calibrates on its own traffic, which is what the share is about).
    """

    MIN_SCORES = 20  # below this many scores the quantile is noise: use the initial threshold

    def __init__(
        self, target_large_share: float, *, window: int = 500, initial_threshold: float = 0.5
    ) -> None:
        if not 0.0 <= target_large_share <= 1.0:
            raise ValueError("target_large_share must be in [0, 1]")
        if window < 1:
            raise ValueError("window must be at least 1")
        self.target_large_share = target_large_share
        self.window = window
        self.initial_threshold = initial_threshold
        self._recent: deque[float] = deque()
        self._sorted: list[float] = []
        # Scores equal to the threshold go large in the proportion that keeps the share
        # on target; the credit spreads those picks evenly (no randomness needed).
        self._tie_credit = 0.0

    @property
    def warming_up(self) -> bool:
        """Whether too few scores are recorded yet for a quantile."""
        return len(self._sorted) < min(self.MIN_SCORES, self.window)

    def threshold(self) -> float:
        """The threshold the next decision will use (1 for target 0, 0 for target 1)."""
        target = self.target_large_share
        if target <= 0.0:
            return 1.0
        if target >= 1.0:
            return 0.0
        if self.warming_up:
            return self.initial_threshold
        n = len(self._sorted)
        return self._sorted[min(n - 1, int((1.0 - target) * n))]

    def decide(self, score: float) -> tuple[bool, float]:
        """Whether ``score`` goes large, and the threshold used; then records the score.

        Target 0 never goes large and target 1 always does, whatever the score.
        """
        threshold = self.threshold()
        if self.target_large_share <= 0.0:
            large = False
        elif self.target_large_share >= 1.0:
            large = True
        elif score != threshold or self.warming_up:
            large = score >= threshold
        else:
            large = self._tie_goes_large(threshold)
        self._record(score)
        return large, threshold

    def _tie_goes_large(self, threshold: float) -> bool:
        n = len(self._sorted)
        below = bisect.bisect_left(self._sorted, threshold)
        ties = bisect.bisect_right(self._sorted, threshold) - below
        above = n - below - ties
        self._tie_credit += min(1.0, max(0.0, (self.target_large_share * n - above) / ties))
        if self._tie_credit >= 1.0:
            self._tie_credit -= 1.0
            return True
        return False

    def _record(self, score: float) -> None:
        self._recent.append(score)
        bisect.insort(self._sorted, score)
        if len(self._recent) > self.window:
            old = self._recent.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, old)]
