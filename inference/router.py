"""Chooses the tier for a request's ``model``: ``auto``, an alias, or a served id.

``auto`` is scored (inference.scoring): the learned router over the question's
embedding, plus the retrieval and conversation priors, against a threshold calibrated
online to ``router_target_large_share``. Without a large tier every
request goes to the small one, and the reason says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import NotFound
from inference.pool import BackendPools, Tier
from inference.scoring import AutoRouter, RouteDecision, RouteSignals

ALIASES: tuple[str, ...] = ("auto", "small", "large")


@dataclass(frozen=True)
class Route:
    """Where a request goes and why (span attributes, a response header, the audit)."""

    tier: Tier
    model: str
    reason: str
    decision: RouteDecision | None = None

    def header_value(self) -> str:
        value = f"{self.tier}; model={self.model}; reason={self.reason}"
        if self.decision is not None:
            value += f"; score={self.decision.score:.3f}; threshold={self.decision.threshold:.3f}"
        return value


class ModelRouter:
    def __init__(self, pools: BackendPools, auto: AutoRouter):
        self._pools = pools
        self._auto = auto

    @property
    def pools(self) -> BackendPools:
        return self._pools

    def wants_embedding(self, requested: str) -> bool:
        """Whether routing ``requested`` reads the question's embedding (``auto`` with a
        large tier to choose: the learned scorer)."""
        return requested == "auto" and "large" in self._pools.pools

    def served_models(self) -> list[str]:
        return self._pools.served_models()

    def _tier(self, tier: Tier, reason: str, decision: RouteDecision | None = None) -> Route:
        return Route(tier, self._pools.pools[tier].model, reason, decision)

    def route(self, requested: str, signals: RouteSignals | None = None) -> Route:
        has_large = "large" in self._pools.pools
        if requested == "auto":
            if not has_large:
                return self._tier("small", "auto:large-not-configured")
            decision = self._auto.decide(signals or RouteSignals.from_messages([]))
            return self._tier(decision.tier, decision.reason, decision)
        if requested == "small":
            return self._tier("small", "alias")
        if requested == "large":
            if has_large:
                return self._tier("large", "alias")
            return self._tier("small", "large-not-configured")
        tier = self._pools.tier_of(requested)
        if tier is not None:
            return self._tier(tier, "model-id")
        raise NotFound(
            f"The model '{requested}' does not exist; use one of "
            f"{', '.join([*ALIASES, *self.served_models()])}",
            param="model",
            code="model_not_found",
        )
