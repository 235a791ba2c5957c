"""What an answer costs: tokens at the served model's price (``HEADWATER_MODEL_PRICES``).

Costs are counted in whole nano-units of ``cost_currency`` (1e-9), so the sums of many
answers are exact integers, and shown as decimals (``as_currency``). A price is per
million tokens; a model without one costs 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from decimal import Decimal

from core.settings import ModelPrice

NANOS_PER_UNIT = 1_000_000_000


def as_currency(nanos: int) -> float:
    """Nano-units as currency units (9 decimals: exact for sums below 9 million)."""
    return round(nanos / NANOS_PER_UNIT, 9)


def to_nanos(cost: float) -> int:
    """The inverse of ``as_currency``."""
    return round(cost * NANOS_PER_UNIT)


class PriceTable:
    """The price of each served model, in nano-units per token (exact decimals)."""

    def __init__(self, prices: Mapping[str, ModelPrice]):
        # per million tokens -> nanos per token: * 1e9 / 1e6
        self._per_token = {
            model: (
                Decimal(str(price.prompt_per_mtok)) * 1000,
                Decimal(str(price.completion_per_mtok)) * 1000,
            )
            for model, price in prices.items()
        }

    def priced(self, model: str) -> bool:
        return model in self._per_token

    def cost_nanos(self, model: str, *, prompt_tokens: int, completion_tokens: int) -> int:
        """The cost of one request's tokens, rounded up to a whole nano-unit (so a worst
        case priced this way is never below the real cost of fewer tokens)."""
        price = self._per_token.get(model)
        if price is None:
            return 0
        return math.ceil(price[0] * prompt_tokens + price[1] * completion_tokens)

    def worst_cost_nanos(
        self, models: Iterable[str], *, prompt_tokens: int, completion_tokens: int
    ) -> int:
        """The highest cost of these tokens on any of ``models`` (a request may be served
        by the other tier when its own fails)."""
        return max(
            (
                self.cost_nanos(m, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
                for m in models
            ),
            default=0,
        )
