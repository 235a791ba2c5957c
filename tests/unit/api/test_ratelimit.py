from __future__ import annotations

import pytest

from acl.models import Principal
from api.ratelimit import RateLimiter
from core.errors import RateLimited


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


ALICE = Principal(tenant="acme", user_id="alice", key_id="k1")
BOB = Principal(tenant="acme", user_id="bob", key_id="k2")


def test_a_burst_is_allowed_then_429_with_retry_after_then_refilled() -> None:
    clock = Clock()
    limiter = RateLimiter(rate_per_s=2, burst=3, clock=clock)
    for _ in range(3):
        limiter.check(ALICE)
    with pytest.raises(RateLimited) as info:
        limiter.check(ALICE)
    assert info.value.status_code == 429 and info.value.retry_after_s == 1
    assert info.value.code == "rate_limit_exceeded"
    limiter.check(BOB)  # another key has its own bucket
    clock.now += 0.5
    limiter.check(ALICE)  # one token back after 1/rate seconds


def test_a_slow_rate_says_how_long_to_wait() -> None:
    limiter = RateLimiter(rate_per_s=0.1, burst=1, clock=Clock())
    limiter.check(ALICE)
    with pytest.raises(RateLimited) as info:
        limiter.check(ALICE)
    assert info.value.retry_after_s == 10


def test_zero_rate_turns_the_limit_off() -> None:
    limiter = RateLimiter(rate_per_s=0, burst=1)
    for _ in range(100):
        limiter.check(ALICE)


def test_idle_buckets_are_dropped() -> None:
    clock = Clock()
    limiter = RateLimiter(rate_per_s=10, burst=10, clock=clock)
    limiter.check(ALICE)
    clock.now += 5
    limiter.check(BOB)
    assert set(limiter._buckets) == {"k2"}  # noqa: SLF001 - memory bound is the point
