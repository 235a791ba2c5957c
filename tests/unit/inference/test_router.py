from __future__ import annotations

import pytest

from core.errors import NotFound
from inference.pool import BackendPools, Tier, TierPool
from inference.router import ModelRouter
from inference.scoring import AutoRouter, RouteSignals
from inference.vllm import OpenAIBackend


def _pools(**models: str) -> BackendPools:
    tiers: dict[Tier, TierPool] = {}
    for tier, model in models.items():
        backend = OpenAIBackend(base_url="http://127.0.0.1:9/v1", model=model, timeout_s=1)
        tiers[tier] = TierPool(  # type: ignore[index]
            tier,  # type: ignore[arg-type]
            [backend],
            max_inflight=1,
            queue_max=0,
            queue_timeout_s=1,
        )
    return BackendPools(tiers, health_interval_s=60)


def _router(share: float = 0.5, **models: str) -> ModelRouter:
    return ModelRouter(_pools(**models), AutoRouter(share, window=50))


def test_aliases_and_model_ids_resolve_to_tiers() -> None:
    router = _router(small="s-model", large="l-model")
    assert router.route("small").model == "s-model"
    assert router.route("large").model == "l-model"
    assert router.route("l-model").tier == "large"
    assert router.served_models() == ["l-model", "s-model"]


def test_auto_is_scored_and_the_decision_is_kept_on_the_route() -> None:
    router = _router(small="s", large="l")
    hard = RouteSignals.from_messages(
        [("user", "Compare our two pension plans step by step and explain which is better")],
    )
    route = router.route("auto", hard)
    assert route.decision is not None and route.reason.startswith("auto:")
    assert f"score={route.decision.score:.3f}" in route.header_value()


def test_auto_without_a_large_tier_goes_small_and_says_why() -> None:
    route = _router(small="s").route("auto", RouteSignals.from_messages([("user", "hi")]))
    assert (route.tier, route.reason, route.decision) == (
        "small",
        "auto:large-not-configured",
        None,
    )


def test_large_without_a_large_server_falls_back_and_says_so() -> None:
    route = _router(small="s").route("large")
    assert (route.tier, route.reason) == ("small", "large-not-configured")


def test_unknown_model_is_a_404_naming_the_choices() -> None:
    with pytest.raises(NotFound) as info:
        _router(small="s").route("gpt-9")
    assert info.value.code == "model_not_found" and "auto, small, large, s" in info.value.message
