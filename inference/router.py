"""Chooses the backend for a request's ``model``: ``auto``, an alias, or a served id."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from core.errors import NotFound
from inference.vllm import OpenAIBackend

Tier = Literal["small", "large"]
ALIASES: tuple[str, ...] = ("auto", "small", "large")


@dataclass(frozen=True)
class Route:
    """Where a request goes and why (recorded on spans and response headers)."""

    tier: Tier
    backend: OpenAIBackend
    reason: str


class ModelRouter:
    """Resolves a requested model to a tier.

    ``auto`` goes to the small tier: the scoring router that sends hard questions to
    the large tier is the gateway issue's work. ``large`` falls back to the small tier
    when no large server is configured, and says so in the route reason.
    """

    def __init__(self, *, small: OpenAIBackend, large: OpenAIBackend | None):
        self._tiers: dict[Tier, OpenAIBackend] = {"small": small}
        if large is not None:
            self._tiers["large"] = large

    @property
    def backends(self) -> dict[Tier, OpenAIBackend]:
        return dict(self._tiers)

    def served_models(self) -> list[str]:
        return sorted({backend.model for backend in self._tiers.values()})

    def route(self, requested: str) -> Route:
        if requested in ("auto", "small"):
            reason = "alias" if requested == "small" else "auto:default-small"
            return Route("small", self._tiers["small"], reason)
        if requested == "large":
            if "large" in self._tiers:
                return Route("large", self._tiers["large"], "alias")
            return Route("small", self._tiers["small"], "large-not-configured")
        for tier, backend in self._tiers.items():
            if backend.model == requested:
                return Route(tier, backend, "model-id")
        raise NotFound(
            f"model {requested!r} is not served; use one of "
            f"{', '.join([*ALIASES, *self.served_models()])}",
            param="model",
            code="model_not_found",
        )
