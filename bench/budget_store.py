"""What budgets add to a request: one reservation and one settlement (two Lua scripts on
Redis) per answered request, on a private ``redis-server`` (deploy/redis).

    python -m bench.budget_store [--requests 2000] [--concurrency 32]

Each request reserves on three budgets (tenant, department, key: the most a request can
have) and settles. Reports the round trips' p50/p99 at concurrency 1 (what a request
waits) and the reserve+settle pairs per second at ``--concurrency`` from one asyncio
process (what one API process can drive). Progress to stderr; one JSON object to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from acl.models import Principal
from api.budgets import BudgetGuard
from api.cost import PriceTable
from core.redis_store import open_shared_store
from core.settings import BudgetRule
from deploy.process import free_port
from deploy.redis import redis_process

PRINCIPAL = Principal(tenant="bench", user_id="u", department="hr", key_id="k1")
RULES = [
    BudgetRule(tenant="bench", limit=10**15),
    BudgetRule(tenant="bench", scope="department", name="*", limit=10**15),
    BudgetRule(tenant="bench", scope="key", name="*", limit=10**15),
]


async def _one(guard: BudgetGuard) -> tuple[float, float]:
    started = time.perf_counter()
    reservation = await guard.reserve(PRINCIPAL, prompt_tokens=500, max_tokens=256, models=["m"])
    reserved = time.perf_counter()
    assert reservation is not None
    await guard.settle(reservation, model="m", usage={"prompt_tokens": 400, "completion_tokens": 9})
    return reserved - started, time.perf_counter() - reserved


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)


async def measure(url: str, requests: int, concurrency: int) -> dict[str, object]:
    async with open_shared_store(url) as store:
        guard = BudgetGuard(RULES, store, PriceTable({}), reservation_ttl_s=60)
        for _ in range(200):  # warm-up: connections, script cache
            await _one(guard)
        pairs = [await _one(guard) for _ in range(requests)]
        reserve, settle = [p[0] for p in pairs], [p[1] for p in pairs]

        async def worker(count: int) -> None:
            for _ in range(count):
                await _one(guard)

        started = time.perf_counter()
        await asyncio.gather(*(worker(requests // concurrency) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {
        "budgets_per_request": len(RULES),
        "c1_reserve_p50_ms": _ms(reserve, 0.5),
        "c1_reserve_p99_ms": _ms(reserve, 0.99),
        "c1_settle_p50_ms": _ms(settle, 0.5),
        "c1_settle_p99_ms": _ms(settle, 0.99),
        "c1_added_mean_ms": round(statistics.fmean(r + s for r, s in pairs) * 1000, 3),
        f"c{concurrency}_pairs_per_s": round(requests // concurrency * concurrency / elapsed),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as root:
        port = free_port()
        server = redis_process(
            port=port, data_dir=Path(root) / "data", log_path=Path(root) / "redis.log"
        )
        server.start()
        try:
            server.wait_ready(30)
            print(f"redis-server on {port}; {args.requests} requests", file=sys.stderr)
            url = f"redis://127.0.0.1:{port}/0"
            result = asyncio.run(measure(url, args.requests, args.concurrency))
        finally:
            server.stop()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
