"""The budget guard's own logic over a recording store (the atomic scripts themselves run
on a real Redis in tests/integration/test_budget_store.py): which budgets apply to a
caller, their periods, what is reserved and settled, and how a refusal reads."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from acl.models import Principal
from api.budgets import BudgetGuard, period_bounds
from api.cost import PriceTable, as_currency
from core.errors import BudgetExceeded
from core.redis_store import CounterCharge, CounterRefusal
from core.settings import BudgetRule, ModelPrice, Settings

NOW = datetime(2026, 12, 3, 17, 42, 30, tzinfo=UTC)
ALICE = Principal(tenant="acme", user_id="alice", department="hr", key_id="k-alice")
PRICES = PriceTable(
    {
        "small": ModelPrice(prompt_per_mtok=0.1, completion_per_mtok=0.4),
        "large": ModelPrice(prompt_per_mtok=3, completion_per_mtok=15),
    }
)


class RecordingStore:
    def __init__(self, refuse: CounterRefusal | None = None):
        self.refuse = refuse
        self.reserved: list[tuple[str, list[CounterCharge], float]] = []
        self.settled: list[tuple[str, list[CounterCharge]]] = []

    async def reserve(
        self, reservation_id: str, charges: Sequence[CounterCharge], *, ttl_s: float
    ) -> CounterRefusal | None:
        self.reserved.append((reservation_id, list(charges), ttl_s))
        return self.refuse

    async def settle(self, reservation_id: str, charges: Sequence[CounterCharge]) -> None:
        self.settled.append((reservation_id, list(charges)))


def _guard(rules: list[BudgetRule], store: RecordingStore) -> BudgetGuard:
    return BudgetGuard(rules, store, PRICES, reservation_ttl_s=90, clock=lambda: NOW)


@pytest.mark.parametrize(
    ("period", "start", "end"),
    [
        ("minute", "2026-12-03T17:42:00", "2026-12-03T17:43:00"),
        ("hour", "2026-12-03T17:00:00", "2026-12-03T18:00:00"),
        ("day", "2026-12-03T00:00:00", "2026-12-04T00:00:00"),
        ("month", "2026-12-01T00:00:00", "2027-01-01T00:00:00"),
    ],
)
def test_periods(period: str, start: str, end: str) -> None:
    first, last = period_bounds(period, NOW)
    assert (first.isoformat(), last.isoformat()) == (f"{start}+00:00", f"{end}+00:00")


def test_only_the_callers_budgets_apply_each_member_with_its_own_counter() -> None:
    rules = [
        BudgetRule(tenant="acme", limit=1000),
        BudgetRule(tenant="acme", scope="department", name="*", limit=100, period="day"),
        BudgetRule(tenant="acme", scope="department", name="finance", limit=5),
        BudgetRule(tenant="acme", scope="key", name="k-alice", unit="cost", limit=2.5),
        BudgetRule(tenant="globex", limit=1),
    ]
    guard = _guard(rules, RecordingStore())
    counters = guard.counters(ALICE)
    assert [c.rule for c in counters] == [rules[0], rules[1], rules[3]]
    assert [c.key for c in counters] == [
        "headwater:counter:{acme}:budget:tenant:-:tokens:month:20261201T0000",
        "headwater:counter:{acme}:budget:department:hr:tokens:day:20261203T0000",
        "headwater:counter:{acme}:budget:key:k-alice:cost:month:20261201T0000",
    ]
    assert [c.limit for c in counters] == [1000, 100, 2_500_000_000]
    bob = Principal(tenant="acme", user_id="bob", department="it")
    assert [c.key.split(":")[5] for c in guard.counters(bob)] == ["-", "it"]
    assert guard.counters(Principal(tenant="initech", user_id="x")) == []


async def test_reserves_the_worst_case_at_the_dearest_model_and_settles_the_reported() -> None:
    store = RecordingStore()
    rules = [
        BudgetRule(tenant="acme", limit=10_000),
        BudgetRule(tenant="acme", scope="key", name="k-alice", unit="cost", limit=1),
    ]
    guard = _guard(rules, store)
    reservation = await guard.reserve(
        ALICE, prompt_tokens=300, max_tokens=100, models=["small", "large"]
    )
    assert reservation is not None
    (reserved_id, charges, ttl_s) = store.reserved[0]
    worst_cost = 300 * 3_000 + 100 * 15_000  # nanos at the large model's price
    assert [(c.amount, c.limit) for c in charges] == [(400, 10_000), (worst_cost, 1_000_000_000)]
    assert ttl_s == 90 and reserved_id == reservation.id

    usage = {"prompt_tokens": 250, "completion_tokens": 7}
    await guard.settle(reservation, model="small", usage=usage)
    await guard.settle(reservation, model="small", usage=usage)  # once only
    assert len(store.settled) == 1
    settled_id, settled = store.settled[0]
    assert settled_id == reservation.id
    assert [c.amount for c in settled] == [257, 250 * 100 + 7 * 400]


async def test_unknown_usage_settles_the_worst_case_and_a_release_settles_nothing() -> None:
    store = RecordingStore()
    guard = _guard([BudgetRule(tenant="acme", limit=10_000)], store)
    left = await guard.reserve(ALICE, prompt_tokens=30, max_tokens=10, models=["small"])
    unused = await guard.reserve(ALICE, prompt_tokens=30, max_tokens=10, models=["small"])
    assert left is not None and unused is not None
    await guard.settle(left, model="small", usage={})
    await guard.release(unused)
    assert [[c.amount for c in charges] for _, charges in store.settled] == [[40], [0]]


async def test_no_budget_no_reservation() -> None:
    store = RecordingStore()
    guard = _guard([BudgetRule(tenant="globex", limit=1)], store)
    assert await guard.reserve(ALICE, prompt_tokens=1, max_tokens=1, models=["small"]) is None
    assert store.reserved == []


@pytest.mark.parametrize(
    ("used", "reserved", "max_tokens", "retry_after_s"),
    [
        (0, 900, 50, 1),  # requests in flight hold it: they settle soon
        (990, 0, 50, 6 * 3600 + 17 * 60 + 30),  # spent: the next period (6:17:30 away)
        (0, 0, 5000, None),  # the worst case alone is over the limit: waiting never helps
    ],
)
async def test_a_refusal_says_why_and_when_to_retry(
    used: int, reserved: int, max_tokens: int, retry_after_s: int | None
) -> None:
    rules = [BudgetRule(tenant="acme", scope="department", name="hr", limit=1000, period="day")]
    key = _guard(rules, RecordingStore()).counters(ALICE)[0].key
    guard = _guard(rules, RecordingStore(refuse=CounterRefusal(key, used, reserved)))
    with pytest.raises(BudgetExceeded) as refused:
        await guard.reserve(ALICE, prompt_tokens=10, max_tokens=max_tokens, models=["small"])
    error = refused.value
    assert (error.status_code, error.error_type, error.code) == (
        429,
        "insufficient_quota",
        "budget_exceeded",
    )
    assert error.retry_after_s == retry_after_s
    assert error.message.startswith("the department hr budget of 1000 tokens per day")
    assert f"{used} used, {reserved} reserved" in error.message


def test_prices_round_up_to_a_nano_and_sum_exactly() -> None:
    assert PRICES.cost_nanos("small", prompt_tokens=1, completion_tokens=0) == 100
    assert PRICES.cost_nanos("unpriced", prompt_tokens=10**6, completion_tokens=10**6) == 0
    odd = PriceTable({"m": ModelPrice(prompt_per_mtok=0.0000001, completion_per_mtok=0)})
    assert odd.cost_nanos("m", prompt_tokens=3, completion_tokens=0) == 1  # 0.0003 nanos
    assert as_currency(PRICES.cost_nanos("large", prompt_tokens=10**6, completion_tokens=0)) == 3


def test_settings_refuse_budgets_without_a_store_or_cost_budgets_without_prices() -> None:
    rule = {"tenant": "acme", "limit": 5}
    with pytest.raises(ValueError, match="HEADWATER_REDIS_URL"):
        Settings(budgets=[rule])
    with pytest.raises(ValueError, match="add 'smollm2-135m-instruct'"):
        Settings(budgets=[{**rule, "unit": "cost"}], redis_url="redis://x")
    with pytest.raises(ValueError, match="names one"):
        BudgetRule(tenant="acme", scope="key", limit=1)
    priced = {"smollm2-135m-instruct": {"prompt_per_mtok": 1, "completion_per_mtok": 2}}
    assert Settings(budgets=[{**rule, "unit": "cost"}], redis_url="redis://x", model_prices=priced)
