"""A chat answer in preparation: its route, the upstream body, the citations and what
the answer has used so far (tokens, firewall findings, the replica that served it)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from acl.models import Principal
from api.answer_cache import CachedAnswer, CacheKeys, CacheOutcome
from api.audit import ServedChunk
from api.budgets import Reservation
from api.chat.grounding import used_citations
from api.chat.protocol import Citation
from api.cost import PriceTable
from api.usage import meter_tokens
from inference.firewall import Finding, Policy
from inference.router import Route
from inference.service import Served
from inference.vllm import JSON


@dataclass
class PreparedAnswer:
    route: Route
    body: JSON
    citations: list[Citation]
    principal: Principal
    policy: Policy
    chunks: list[ServedChunk] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=dict)
    served: Served | None = None
    findings: Counter[str] = field(default_factory=Counter)
    refused: bool = False  # nothing readable grounds it: answered by the refusal, no model
    prices: PriceTable = field(default_factory=lambda: PriceTable({}))
    reservation: Reservation | None = None  # its worst case, held on its budgets
    cost_nanos: int = 0  # the reported tokens at the served model's price
    gpu_seconds: float = 0.0  # its share of the model server's busy time
    cache_keys: CacheKeys | None = None  # set when the tenant's answers are cached
    cache_outcome: CacheOutcome | None = None
    cached: CachedAnswer | None = None  # a hit: answered from the cache, no model
    question_vector: list[float] | None = None  # for a semantic entry
    sent: str | None = None  # a finished stream: the text the client was sent
    finish_reason: str | None = None  # a finished stream's

    @property
    def model(self) -> str:
        """The model that answered (the routed one until a fallback says otherwise)."""
        return self.served.model if self.served else self.route.model

    def meter(self, usage: dict[str, Any] | None) -> None:
        """Count the tokens the model server reported, for chargeback and the audit."""
        if not usage:
            return
        self.usage.update(
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
        )
        self.cost_nanos = self.prices.cost_nanos(
            self.model,
            prompt_tokens=self.usage["prompt_tokens"],
            completion_tokens=self.usage["completion_tokens"],
        )
        meter_tokens(self.principal, model=self.model, usage=self.usage)

    def note(self, direction: str, findings: list[Finding] | tuple[Finding, ...]) -> None:
        self.findings.update(f"{direction}:{finding.entity}" for finding in findings)

    def route_extension(self) -> dict[str, Any]:
        route: dict[str, Any] = {
            "tier": self.route.tier,
            "model": self.model,
            "reason": self.route.reason,
        }
        if self.route.decision is not None:
            route["score"] = round(self.route.decision.score, 4)
            route["threshold"] = round(self.route.decision.threshold, 4)
        if self.served is not None and self.served.fell_back(self.route.tier):
            route["served_tier"] = self.served.tier
        return route

    def extension(self, answer: str | None = None) -> dict[str, Any]:
        """The ``headwater`` object added to responses; with the ``answer`` text, the
        citations are those it used (``api.chat.grounding``)."""
        citations = self.citations if answer is None else used_citations(answer, self.citations)
        extension: dict[str, Any] = {
            "citations": [c.model_dump() for c in citations],
            "route": self.route_extension(),
            "grounding": {"sources": len(self.citations), "refused": self.refused},
        }
        if self.cache_outcome is not None:
            cache: dict[str, Any] = {"outcome": self.cache_outcome}
            if self.cached is not None:
                cache["saved_tokens"] = self.cached.prompt_tokens + self.cached.completion_tokens
            extension["cache"] = cache
        return extension

    def route_header(self) -> str:
        value = self.route.header_value()
        if self.served is not None and self.served.fell_back(self.route.tier):
            value += f"; served={self.served.tier}; served_model={self.served.model}"
        return value
