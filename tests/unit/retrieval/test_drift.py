"""The drift monitor's arithmetic on synthetic questions (no model): each signal moves
when its distribution moves, stays under its threshold when nothing moves, and the probe
check sees an engine whose output changed."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from core.metrics import DRIFT_QUERY_DISTANCE
from retrieval.drift import PROBES, DriftMonitor, DriftPolicy, psi

DIM = 32
POLICY = DriftPolicy(min_score=0.25, window=50, reference_size=200)


def _questions(
    rng: np.random.Generator, center: np.ndarray, n: int, spread: float = 0.6
) -> list[np.ndarray]:
    vectors = center + spread * rng.standard_normal((n, DIM)) / np.sqrt(DIM)
    return list(vectors / np.linalg.norm(vectors, axis=1, keepdims=True))


def _unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal(DIM)
    return v / np.linalg.norm(v)


def _feed(
    monitor: DriftMonitor, tenant: str, vectors: Sequence[np.ndarray], scores: Sequence[float]
) -> None:
    for vector, score in zip(vectors, scores, strict=True):
        monitor.observe(tenant, vector.tolist(), score)


def test_same_distribution_stays_quiet_and_a_topic_shift_alerts() -> None:
    rng = np.random.default_rng(7)
    home, away = _unit(rng), _unit(rng)
    monitor = DriftMonitor(POLICY, dim=DIM, publish_every_s=0)
    _feed(monitor, "acme", _questions(rng, home, 200), rng.uniform(0.4, 0.8, 200))
    assert monitor.state("acme").recent_queries == 0  # reference only
    alarms = 0
    for _ in range(10):
        _feed(monitor, "acme", _questions(rng, home, 50), rng.uniform(0.4, 0.8, 50))
        alarms += monitor.state("acme").alerting
    assert alarms == 0
    _feed(monitor, "acme", _questions(rng, away, 50), rng.uniform(0.0, 0.3, 50))
    state = monitor.state("acme")
    assert state.signals["query_distance"].alerting
    assert state.signals["score_psi"].alerting
    assert state.signals["no_answer_rate"].alerting
    assert DRIFT_QUERY_DISTANCE.labels("acme")._value.get() == pytest.approx(
        state.signals["query_distance"].value
    )


def test_tenants_are_measured_apart() -> None:
    rng = np.random.default_rng(3)
    home, away = _unit(rng), _unit(rng)
    monitor = DriftMonitor(POLICY, dim=DIM)
    for tenant in ("one", "two"):
        _feed(monitor, tenant, _questions(rng, home, 200), rng.uniform(0.4, 0.8, 200))
    _feed(monitor, "one", _questions(rng, away, 50), rng.uniform(0.4, 0.8, 50))
    _feed(monitor, "two", _questions(rng, home, 50), rng.uniform(0.4, 0.8, 50))
    assert monitor.state("one").signals["query_distance"].alerting
    assert not monitor.state("two").alerting


def test_no_signal_before_a_reference_and_a_full_window() -> None:
    monitor = DriftMonitor(POLICY, dim=DIM)
    state = monitor.state("nobody")
    assert state.reference_queries == 0 and not state.alerting
    assert all(signal.value is None for signal in state.signals.values())
    monitor.observe("acme", [1.0] + [0.0] * (DIM - 1), None)  # nothing readable at all
    assert monitor.state("acme").reference_queries == 1


def test_psi_is_zero_for_equal_distributions_and_grows_with_difference() -> None:
    even = np.full(5, 0.2)
    assert psi(even, even) == 0
    assert psi(even, np.array([0.6, 0.1, 0.1, 0.1, 0.1])) > psi(
        even, np.array([0.3, 0.2, 0.2, 0.15, 0.15])
    )


class _Engine:
    model_name, dim, max_tokens = "fake", DIM, 256

    def __init__(self) -> None:
        self.rotation = np.eye(DIM)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        rng = np.random.default_rng(0)
        base = rng.standard_normal((len(texts), DIM))
        return (base @ self.rotation).tolist()

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        return []


def test_the_probe_set_sees_an_engine_whose_output_changed() -> None:
    engine = _Engine()
    monitor = DriftMonitor(POLICY, dim=DIM)
    assert monitor.check_probes(engine) == pytest.approx(1.0)
    assert monitor.check_probes(engine) == pytest.approx(1.0)
    assert not monitor.state("acme").signals["probe_min_cosine"].alerting
    # Other weights behind the same name: every output moves a little.
    engine.rotation = np.eye(DIM) + 0.2 * np.random.default_rng(1).standard_normal((DIM, DIM))
    assert monitor.check_probes(engine) < POLICY.min_probe_cosine
    assert monitor.state("acme").signals["probe_min_cosine"].alerting
    assert len(PROBES) >= 5


class _EmptyStore:
    lexical = False

    def search(self, query: object, *, permission: object, limit: int) -> list[object]:
        return []


async def test_the_retriever_tells_its_observer_and_survives_its_failure() -> None:
    from acl.filter import PermissionFilter
    from acl.models import Principal
    from retrieval.service import Retriever

    seen: list[tuple[str, float | None]] = []

    def observer(tenant: str, vector: Sequence[float], top: float | None) -> None:
        seen.append((tenant, top))
        raise RuntimeError("a broken monitor")

    retriever = Retriever(
        store=_EmptyStore(),  # type: ignore[arg-type]
        embedder=_Engine(),  # type: ignore[arg-type]
        collection="c",
        observer=observer,
    )
    permission = PermissionFilter.for_principal(Principal(tenant="acme", user_id="u"))
    result = await retriever.retrieve("q", permission=permission, top_k=3)
    assert result.hits == [] and seen == [("acme", None)]
