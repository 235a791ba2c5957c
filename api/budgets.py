"""Budgets that hold under concurrency: per tenant, department and API key, in tokens or
money, per minute, hour, day or month (``HEADWATER_BUDGETS``).

Before a request calls a model it reserves its worst case — every prompt token (the
grounded prompt, counted with the model's tokenizer, plus what the chat template may
add) and all of ``max_tokens``, at the highest price among the models that may serve it
— on every budget that applies to its caller, all or none, in one atomic step of the
shared store (``core.redis_store``). When the answer is done it settles: the
reservation is released and the tokens the model server reported are added. A
reservation that does not fit is refused with 429 ``budget_exceeded`` before any model
is called. So however many requests run at once, on however many replicas, what they
use can never pass a limit: each holds its worst case until it knows its real use.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from acl.models import Principal
from api.cost import PriceTable, as_currency, to_nanos
from core.errors import BudgetExceeded
from core.metrics import BUDGET_REFUSALS
from core.redis_store import CounterCharge, CounterRefusal, counter_key
from core.settings import BudgetRule
from inference.tokens import TokenCounter

_log = logging.getLogger(__name__)
_KEEP_AFTER_PERIOD_S = 86_400  # a counter stays readable a day after its period ends


class CounterStore(Protocol):
    """Atomic reserve/settle on bounded counters (``core.redis_store.SharedStore``)."""

    async def reserve(
        self, reservation_id: str, charges: Sequence[CounterCharge], *, ttl_s: float
    ) -> CounterRefusal | None: ...

    async def settle(self, reservation_id: str, charges: Sequence[CounterCharge]) -> None: ...


def worst_prompt_tokens(
    tokens: TokenCounter, messages: Sequence[Mapping[str, str]], *, template_tokens: int
) -> int:
    """The most prompt tokens a model server can count for ``messages``: their text by
    the model's tokenizer (an upper bound without one), plus what the chat template may
    add: ``template_tokens`` (a default system prompt, the generation prompt) and 8 per
    message (role markers; a token where two texts' pieces merge differently)."""
    text = sum(tokens.count(message["content"]) for message in messages)
    return text + template_tokens + 8 * len(messages)


def period_bounds(period: str, now: datetime) -> tuple[datetime, datetime]:
    """The start and end (UTC) of the ``period`` that contains ``now``."""
    now = now.astimezone(UTC)
    if period == "month":
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = (start + timedelta(days=32)).replace(day=1)
        return start, end
    size = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}
    start = now.replace(second=0, microsecond=0)
    if period in ("hour", "day"):
        start = start.replace(minute=0)
    if period == "day":
        start = start.replace(hour=0)
    return start, start + size[period]


@dataclass(frozen=True)
class BudgetCounter:
    """One budget's counter for the period a request falls in."""

    rule: BudgetRule
    key: str
    limit: int  # tokens, or nano-units of currency
    expire_s: int
    ends_in_s: float

    def charge(self, *, tokens: int, cost_nanos: int, limit: bool = True) -> CounterCharge:
        amount = tokens if self.rule.unit == "tokens" else cost_nanos
        return CounterCharge(
            self.key, amount, limit=self.limit if limit else 0, expire_s=self.expire_s
        )


@dataclass
class Reservation:
    """A request's reserved worst case, until it is settled."""

    id: str
    counters: list[BudgetCounter]
    tokens: int
    cost_nanos: int
    settled: bool = field(default=False)


class BudgetGuard:
    """Reserves and settles requests on the budgets of their callers."""

    def __init__(
        self,
        rules: Sequence[BudgetRule],
        store: CounterStore,
        prices: PriceTable,
        *,
        reservation_ttl_s: float,
        currency: str = "USD",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self._rules = list(rules)
        self._store = store
        self._prices = prices
        self._ttl_s = reservation_ttl_s
        self._currency = currency
        self._clock = clock

    def counters(self, principal: Principal) -> list[BudgetCounter]:
        """The counters of every budget that applies to ``principal`` now."""
        now = self._clock()
        found: list[BudgetCounter] = []
        for rule in self._rules:
            member = _member(rule, principal)
            if member is None:
                continue
            start, end = period_bounds(rule.period, now)
            name = f"budget:{rule.scope}:{member}:{rule.unit}:{rule.period}:{start:%Y%m%dT%H%M}"
            ends_in_s = (end - now).total_seconds()
            found.append(
                BudgetCounter(
                    rule=rule,
                    key=counter_key(principal.tenant, name),
                    limit=int(rule.limit) if rule.unit == "tokens" else to_nanos(rule.limit),
                    expire_s=math.ceil(ends_in_s) + _KEEP_AFTER_PERIOD_S,
                    ends_in_s=ends_in_s,
                )
            )
        return found

    async def reserve(
        self,
        principal: Principal,
        *,
        prompt_tokens: int,
        max_tokens: int,
        models: Sequence[str],
    ) -> Reservation | None:
        """Reserve the worst case on every budget of ``principal``; None when none applies.
        Raises ``BudgetExceeded`` when it does not fit one."""
        counters = self.counters(principal)
        if not counters:
            return None
        tokens = prompt_tokens + max_tokens
        cost = self._prices.worst_cost_nanos(
            models, prompt_tokens=prompt_tokens, completion_tokens=max_tokens
        )
        reservation = Reservation(uuid.uuid4().hex, counters, tokens, cost)
        charges = [c.charge(tokens=tokens, cost_nanos=cost) for c in counters]
        refusal = await self._store.reserve(reservation.id, charges, ttl_s=self._ttl_s)
        if refusal is not None:
            counter = next(c for c in counters if c.key == refusal.key)
            BUDGET_REFUSALS.labels(principal.tenant, counter.rule.scope).inc()
            amount = next(ch.amount for ch in charges if ch.key == refusal.key)
            raise _exceeded(counter, refusal, amount, self._currency)
        return reservation

    async def settle(
        self, reservation: Reservation, *, model: str, usage: Mapping[str, int] | None
    ) -> None:
        """Release ``reservation`` and count what was used: the tokens the model server
        reported, or, when it reported none (the client left mid-answer), the whole
        reserved worst case (never less than what may have been generated)."""
        if reservation.settled:
            return
        reservation.settled = True
        if usage:
            prompt, completion = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
            tokens = prompt + completion
            cost = self._prices.cost_nanos(
                model, prompt_tokens=prompt, completion_tokens=completion
            )
        else:
            tokens, cost = reservation.tokens, reservation.cost_nanos
        charges = [
            c.charge(tokens=tokens, cost_nanos=cost, limit=False) for c in reservation.counters
        ]
        await self._store.settle(reservation.id, charges)

    async def release(self, reservation: Reservation) -> None:
        """Release a reservation whose request never reached a model (nothing used)."""
        if reservation.settled:
            return
        reservation.settled = True
        charges = [c.charge(tokens=0, cost_nanos=0, limit=False) for c in reservation.counters]
        await self._store.settle(reservation.id, charges)


def _member(rule: BudgetRule, principal: Principal) -> str | None:
    """Whose counter of ``rule`` the principal's requests use; None if it does not apply."""
    if rule.tenant != principal.tenant:
        return None
    if rule.scope == "tenant":
        return "-"
    own = principal.department if rule.scope == "department" else principal.key_id
    if own is None or rule.name not in ("*", own):
        return None
    return own


def _exceeded(
    counter: BudgetCounter, refusal: CounterRefusal, amount: int, currency: str
) -> BudgetExceeded:
    rule = counter.rule

    def shown(value: int) -> str:
        return f"{value}" if rule.unit == "tokens" else f"{as_currency(value):g}"

    unit = "tokens" if rule.unit == "tokens" else currency
    whose = "tenant" if rule.scope == "tenant" else f"{rule.scope} {rule.name}"
    message = (
        f"the {whose} budget of {shown(counter.limit)} {unit} per {rule.period} cannot cover "
        f"this request's worst case ({shown(amount)}): {shown(refusal.used)} used, "
        f"{shown(refusal.reserved)} reserved by requests in flight; lower max_tokens or "
        "retry later"
    )
    if refusal.used + amount > counter.limit:
        # Only the next period helps (and nothing does when the worst case alone is over).
        retry: int | None = math.ceil(counter.ends_in_s) if amount <= counter.limit else None
    else:
        retry = 1  # requests in flight will settle below their worst case
    return BudgetExceeded(message, retry_after_s=retry)
