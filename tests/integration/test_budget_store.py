"""Budgets on a real Redis (deploy/redis, started by the ``redis_url`` fixture): the
reserve/settle scripts under concurrency from two clients (as two API replicas hold
two connection pools), all-or-none over several budgets, expiry of a reservation
whose process died, and failing closed when the store is down."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator

import pytest

from acl.models import Principal
from api.budgets import BudgetGuard, Reservation
from api.cost import PriceTable
from core.errors import BudgetExceeded, UpstreamUnavailable
from core.redis_store import (
    MAX_CONNECTIONS,
    CounterCharge,
    SharedStore,
    counter_key,
    open_shared_store,
)
from core.settings import BudgetRule, ModelPrice
from deploy.process import free_port

pytestmark = pytest.mark.integration

WORST = 120  # prompt 100 + max_tokens 20


@pytest.fixture
async def stores(redis_url: str) -> AsyncIterator[tuple[SharedStore, SharedStore]]:
    async with open_shared_store(redis_url) as one, open_shared_store(redis_url) as two:
        yield one, two


def _principal(tenant: str, *, department: str = "hr", key: str = "k1") -> Principal:
    return Principal(tenant=tenant, user_id="u", department=department, key_id=key)


def _guard(store: SharedStore, rules: list[BudgetRule], *, ttl_s: float = 60) -> BudgetGuard:
    prices = PriceTable({"m": ModelPrice(prompt_per_mtok=1000, completion_per_mtok=3000)})
    return BudgetGuard(rules, store, prices, reservation_ttl_s=ttl_s)


async def test_fifty_concurrent_reservations_from_two_clients_fit_exactly_ten(
    stores: tuple[SharedStore, SharedStore],
) -> None:
    tenant = f"t{uuid.uuid4().hex[:8]}"
    rules = [BudgetRule(tenant=tenant, unit="tokens", limit=10 * WORST, period="day")]
    guards = [_guard(store, rules) for store in stores]
    principal = _principal(tenant)

    async def ask(i: int) -> object:
        try:
            return await guards[i % 2].reserve(
                principal, prompt_tokens=100, max_tokens=20, models=["m"]
            )
        except BudgetExceeded as exc:
            return exc

    outcomes = await asyncio.gather(*(ask(i) for i in range(50)))
    held = [o for o in outcomes if isinstance(o, Reservation)]
    refused = [o for o in outcomes if isinstance(o, BudgetExceeded)]
    assert len(held) == 10 and len(refused) == 40
    assert all(r.retry_after_s == 1 for r in refused)  # in-flight requests will settle
    key = guards[0].counters(principal)[0].key
    totals = await stores[0].totals(key)
    assert (totals.used, totals.reserved) == (0, 10 * WORST)

    rng = random.Random(7)
    reported = [(rng.randint(1, 100), rng.randint(0, 20)) for _ in held]
    await asyncio.gather(
        *(
            guards[i % 2].settle(r, model="m", usage={"prompt_tokens": p, "completion_tokens": c})
            for i, (r, (p, c)) in enumerate(zip(held, reported, strict=True))
        )
    )
    totals = await stores[1].totals(key)
    assert totals.reserved == 0
    assert totals.used == sum(p + c for p, c in reported) <= 10 * WORST
    # What is left fits as many worst cases as it can hold, and no more.
    room = (10 * WORST - totals.used) // WORST
    again = await asyncio.gather(*(ask(i) for i in range(room + 3)))
    assert sum(not isinstance(o, BudgetExceeded) for o in again) == room


async def test_all_or_none_across_budgets_and_cost_in_nanos(
    stores: tuple[SharedStore, SharedStore],
) -> None:
    tenant = f"t{uuid.uuid4().hex[:8]}"
    rules = [
        BudgetRule(tenant=tenant, unit="cost", limit=1.0, period="month"),
        BudgetRule(tenant=tenant, scope="department", name="*", unit="tokens", limit=10_000),
        BudgetRule(tenant=tenant, scope="key", name="k1", unit="tokens", limit=WORST),
    ]
    guard = _guard(stores[0], rules)
    first = await guard.reserve(_principal(tenant), prompt_tokens=100, max_tokens=20, models=["m"])
    assert first is not None and first.cost_nanos == 100 * 1_000_000 + 20 * 3_000_000
    with pytest.raises(BudgetExceeded) as refused:
        await guard.reserve(_principal(tenant), prompt_tokens=100, max_tokens=20, models=["m"])
    assert refused.value.code == "budget_exceeded" and "key k1" in refused.value.message
    # The refusal held nothing on the tenant's and the department's counters.
    tenant_key, department_key, _ = (c.key for c in guard.counters(_principal(tenant)))
    assert (await stores[0].totals(tenant_key)).reserved == first.cost_nanos
    assert (await stores[0].totals(department_key)).reserved == WORST
    # Another key of the department is not bound by k1's budget.
    other = await guard.reserve(
        _principal(tenant, key="k2"), prompt_tokens=100, max_tokens=20, models=["m"]
    )
    assert other is not None
    await guard.settle(first, model="m", usage={"prompt_tokens": 10, "completion_tokens": 5})
    await guard.release(other)
    tenant_totals = await stores[0].totals(tenant_key)
    assert (tenant_totals.used, tenant_totals.reserved) == (10 * 1_000_000 + 5 * 3_000_000, 0)
    assert (await stores[0].totals(department_key)).used == 15


async def test_an_unsettled_reservation_expires(stores: tuple[SharedStore, SharedStore]) -> None:
    key = counter_key(f"t{uuid.uuid4().hex[:8]}", "budget:test")
    charge = CounterCharge(key, 70, limit=100, expire_s=60)
    assert await stores[0].reserve("dead-process", [charge], ttl_s=0.2) is None
    refusal = await stores[1].reserve("next", [charge], ttl_s=60)
    assert refusal is not None and (refusal.used, refusal.reserved) == (0, 70)
    await asyncio.sleep(0.3)
    assert await stores[1].reserve("after-expiry", [charge], ttl_s=60) is None
    assert (await stores[1].totals(key)).reserved == 70
    # A late settlement of the expired reservation counts its use, releases nothing twice.
    await stores[0].settle("dead-process", [CounterCharge(key, 30, expire_s=60)])
    totals = await stores[0].totals(key)
    assert (totals.used, totals.reserved) == (30, 70)


async def test_an_unreachable_store_fails_closed() -> None:
    async with open_shared_store(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.5) as store:
        guard = _guard(store, [BudgetRule(tenant="acme", limit=10)])
        with pytest.raises(UpstreamUnavailable) as failed:
            await guard.reserve(_principal("acme"), prompt_tokens=1, max_tokens=1, models=["m"])
    assert failed.value.code == "shared_store_unavailable" and failed.value.retry_after_s == 1


async def test_more_concurrent_requests_than_connections_wait_for_one_instead_of_failing(
    redis_url: str,
) -> None:
    tenant = f"t{uuid.uuid4().hex[:8]}"
    many = 3 * MAX_CONNECTIONS
    rules = [BudgetRule(tenant=tenant, unit="tokens", limit=many * WORST, period="day")]
    async with open_shared_store(redis_url) as store:
        guard = _guard(store, rules)
        outcomes = await asyncio.gather(
            *(
                guard.reserve(_principal(tenant), prompt_tokens=100, max_tokens=20, models=["m"])
                for _ in range(many)
            ),
            return_exceptions=True,
        )
    refused = [o for o in outcomes if not isinstance(o, Reservation)]
    assert not refused, refused[:3]
