"""Query drift: have a tenant's questions moved away from what they were, and from what
the corpus answers?

Per tenant, the first ``reference_size`` questions a process sees form the reference;
the last ``window`` questions after it are compared with it on three signals:

- ``query_distance``: cosine distance between the mean embedding of the recent questions
  and that of the reference (the embeddings are unit vectors; a topic shift moves the
  mean);
- ``score_psi``: population stability index of each question's top retrieval score (its
  cosine to the best chunk the caller may read) over the reference's quantile bins;
- ``no_answer_rate``: the share of recent questions with nothing readable at or above
  the relevance floor (the grounding floor), against the reference's share.

And per process, a fixed probe set: the embedding engine's vectors of a few fixed
sentences, compared with its own first answer for them; a swapped or broken engine
(other weights behind a URL, a bad quantisation) moves them.

The thresholds (:class:`DriftPolicy`) are the alert rule's (``deploy/prometheus/
alerts.yml``, ``HeadwaterQueryDrift``; a test holds both to the same numbers); their
false-alarm rate and detection delay are measured by ``bench/drift.py``. The reference
lives in memory: a restarted process takes a new one from its first questions.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from core.metrics import (
    DRIFT_NO_ANSWER_RATE,
    DRIFT_NO_ANSWER_REFERENCE,
    DRIFT_PROBE_MIN_COSINE,
    DRIFT_QUERIES,
    DRIFT_QUERY_DISTANCE,
    DRIFT_SCORE_PSI,
)
from retrieval.embedding import Embedder

Vector = npt.NDArray[np.float64]

PROBES = (
    "Headwater binds each collection to the model that embedded it.",
    "What is the parental leave policy for new employees?",
    "The quarterly revenue grew by twelve percent compared with last year.",
    "How do I reset my password for the VPN?",
    "Mitochondria are the powerhouse of the cell.",
    "Die Sitzung beginnt um neun Uhr im großen Saal.",
)


@dataclass(frozen=True)
class DriftPolicy:
    """Window sizes and alert thresholds (the alert rule's numbers)."""

    min_score: float  # the relevance floor: a top score below it found nothing readable
    window: int = 50
    reference_size: int = 200
    score_bins: int = 5
    # Chosen by ``python -m bench.drift --analyse`` (BENCHMARKS.md, "Query drift").
    max_query_distance: float = 0.18
    max_score_psi: float = 1.0
    max_no_answer_increase: float = 0.2
    min_probe_cosine: float = 0.99


@dataclass(frozen=True)
class Signal:
    value: float | None  # None: not enough questions yet
    threshold: float
    alerting: bool


@dataclass(frozen=True)
class DriftState:
    """One tenant's drift now."""

    tenant: str
    reference_queries: int
    recent_queries: int
    signals: dict[str, Signal]
    no_answer_reference: float | None = None  # the reference's unanswered share

    @property
    def alerting(self) -> bool:
        return any(signal.alerting for signal in self.signals.values())


@dataclass
class _Tenant:
    reference_sum: Vector
    reference_scores: list[float] = field(default_factory=list)
    reference_empty: int = 0
    edges: Vector | None = None  # inner quantile edges of the reference's top scores
    edge_list: list[float] = field(default_factory=list)  # the same, for one score
    reference_share: Vector | None = None
    recent: deque[tuple[Vector, float]] = field(default_factory=deque)
    recent_sum: Vector | None = None
    recent_bins: Vector | None = None
    recent_empty: int = 0


def psi(expected: Vector, actual: Vector) -> float:
    """Population stability index of two distributions over the same bins."""
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def _cosine_distance(a: Vector, b: Vector) -> float:
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    return 1.0 - float(a @ b) / norms if norms else 1.0


class DriftMonitor:
    """Drift of each tenant's questions; :meth:`observe` is called once per retrieval."""

    def __init__(self, policy: DriftPolicy, *, dim: int, publish_every_s: float = 1.0):
        self.policy = policy
        self._dim = dim
        # The gauges are set at most this often per tenant: a scrape reads them every 15 s
        # or more, and recomputing the signals on every question cost the answer ~0.1 ms.
        self._publish_every_s = publish_every_s
        self._published: dict[str, float] = {}
        self._tenants: dict[str, _Tenant] = {}
        self._lock = threading.Lock()
        self._probe_reference: Vector | None = None
        self.probe_min_cosine: float | None = None

    def observe(self, tenant: str, vector: Sequence[float], top_score: float | None) -> None:
        """One question of ``tenant``: its embedding and its best hit's score (None: the
        caller could read nothing at all)."""
        q = np.asarray(vector, dtype=np.float64)
        score = -1.0 if top_score is None else float(top_score)
        with self._lock:
            state = self._tenants.get(tenant)
            if state is None:
                state = self._tenants[tenant] = _Tenant(reference_sum=np.zeros(self._dim))
            if state.edges is None:
                self._add_reference(state, q, score)
            else:
                self._add_recent(state, q, score)
            now = time.monotonic()
            found = None
            if now - self._published.get(tenant, -math.inf) >= self._publish_every_s:
                self._published[tenant] = now
                found = self._state(tenant, state)
        DRIFT_QUERIES.labels(tenant).inc()
        if found is not None:
            self._publish(found, state)

    def _publish(self, found: DriftState, state: _Tenant) -> None:
        tenant = found.tenant
        for name, gauge in (
            ("query_distance", DRIFT_QUERY_DISTANCE),
            ("score_psi", DRIFT_SCORE_PSI),
            ("no_answer_rate", DRIFT_NO_ANSWER_RATE),
        ):
            value = found.signals[name].value
            gauge.labels(tenant).set(math.nan if value is None else value)
        if state.edges is not None:
            DRIFT_NO_ANSWER_REFERENCE.labels(tenant).set(
                state.reference_empty / self.policy.reference_size
            )

    def _add_reference(self, state: _Tenant, q: Vector, score: float) -> None:
        state.reference_sum += q
        state.reference_scores.append(score)
        state.reference_empty += score < self.policy.min_score
        if len(state.reference_scores) < self.policy.reference_size:
            return
        scores = np.asarray(state.reference_scores)
        quantiles = np.linspace(0, 1, self.policy.score_bins + 1)[1:-1]
        state.edges = np.quantile(scores, quantiles)
        state.edge_list = [float(edge) for edge in state.edges]
        state.reference_share = self._share(
            np.bincount(self._bin(state, scores), minlength=self.policy.score_bins)
        )
        state.reference_scores = []
        state.recent_sum = np.zeros(self._dim)
        state.recent_bins = np.zeros(self.policy.score_bins)

    def _bin(self, state: _Tenant, scores: Vector) -> npt.NDArray[np.intp]:
        assert state.edges is not None
        found: npt.NDArray[np.intp] = np.searchsorted(state.edges, scores, side="right")
        return found

    def _share(self, counts: npt.ArrayLike) -> Vector:
        # Half a question added to every bin: an empty bin of a small window is not
        # infinitely surprising.
        smoothed: Vector = np.asarray(counts, dtype=np.float64) + 0.5
        share: Vector = smoothed / smoothed.sum()
        return share

    def _add_recent(self, state: _Tenant, q: Vector, score: float) -> None:
        assert state.recent_sum is not None and state.recent_bins is not None
        if len(state.recent) == self.policy.window:
            old_q, old_score = state.recent.popleft()
            state.recent_sum -= old_q
            state.recent_bins[bisect.bisect_right(state.edge_list, old_score)] -= 1
            state.recent_empty -= old_score < self.policy.min_score
        state.recent.append((q, score))
        state.recent_sum += q
        state.recent_bins[bisect.bisect_right(state.edge_list, score)] += 1
        state.recent_empty += score < self.policy.min_score

    def _state(self, tenant: str, state: _Tenant) -> DriftState:
        policy = self.policy
        full = state.edges is not None and len(state.recent) == policy.window
        distance = psi_value = rate = None
        reference_rate = state.reference_empty / policy.reference_size
        if full:
            assert state.recent_sum is not None and state.recent_bins is not None
            assert state.reference_share is not None
            distance = _cosine_distance(state.recent_sum, state.reference_sum)
            psi_value = psi(state.reference_share, self._share(state.recent_bins))
            rate = state.recent_empty / policy.window
        signals = {
            "query_distance": Signal(
                distance,
                policy.max_query_distance,
                distance is not None and distance > policy.max_query_distance,
            ),
            "score_psi": Signal(
                psi_value,
                policy.max_score_psi,
                psi_value is not None and psi_value > policy.max_score_psi,
            ),
            "no_answer_rate": Signal(
                rate,
                round(reference_rate + policy.max_no_answer_increase, 4),
                rate is not None and rate - reference_rate > policy.max_no_answer_increase,
            ),
        }
        reference = (
            policy.reference_size if state.edges is not None else len(state.reference_scores)
        )
        return DriftState(
            tenant=tenant,
            reference_queries=reference,
            recent_queries=len(state.recent),
            signals=signals,
            no_answer_reference=reference_rate if state.edges is not None else None,
        )

    def state(self, tenant: str) -> DriftState:
        """``tenant``'s drift now, with the process's probe check."""
        with self._lock:
            state = self._tenants.get(tenant) or _Tenant(reference_sum=np.zeros(self._dim))
            found = self._state(tenant, state)
        probe = self.probe_min_cosine
        found.signals["probe_min_cosine"] = Signal(
            probe,
            self.policy.min_probe_cosine,
            probe is not None and probe < self.policy.min_probe_cosine,
        )
        return found

    def check_probes(self, embedder: Embedder) -> float:
        """Embed the probe set; the lowest cosine to the engine's first answer for it
        (1.0 the first time). Blocking: call it in a thread."""
        vectors = np.asarray(embedder.embed(list(PROBES)), dtype=np.float64)
        if self._probe_reference is None:
            self._probe_reference = vectors
        reference = self._probe_reference
        dots = np.sum(vectors * reference, axis=1)
        norms = np.linalg.norm(vectors, axis=1) * np.linalg.norm(reference, axis=1)
        lowest = float(np.min(dots / np.where(norms > 0, norms, 1.0)))
        self.probe_min_cosine = lowest
        DRIFT_PROBE_MIN_COSINE.set(lowest)
        return lowest
