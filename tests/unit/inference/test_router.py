from __future__ import annotations

import pytest

from core.errors import NotFound
from inference.router import ModelRouter
from inference.vllm import OpenAIBackend


def _backend(model: str) -> OpenAIBackend:
    return OpenAIBackend(base_url="http://127.0.0.1:9/v1", model=model, timeout_s=1)


def test_aliases_and_model_ids_resolve_to_tiers() -> None:
    router = ModelRouter(small=_backend("s-model"), large=_backend("l-model"))
    assert router.route("auto").tier == "small"
    assert router.route("small").backend.model == "s-model"
    assert router.route("large").backend.model == "l-model"
    assert router.route("l-model").tier == "large"
    assert router.served_models() == ["l-model", "s-model"]


def test_large_without_a_large_server_falls_back_and_says_so() -> None:
    route = ModelRouter(small=_backend("s"), large=None).route("large")
    assert (route.tier, route.reason) == ("small", "large-not-configured")


def test_unknown_model_is_a_404_naming_the_choices() -> None:
    with pytest.raises(NotFound) as info:
        ModelRouter(small=_backend("s"), large=None).route("gpt-9")
    assert info.value.code == "model_not_found" and "auto, small, large, s" in info.value.message
