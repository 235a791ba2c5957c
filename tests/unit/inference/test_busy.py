"""Each request's share of a replica's busy time: shares follow the requests in flight,
and the shares of a replica's requests add up to the time it was busy."""

from __future__ import annotations

import random

import pytest

from inference.busy import BusyShares


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_time_is_divided_among_the_requests_in_flight() -> None:
    clock = Clock()
    busy = BusyShares(clock)
    a = busy.start()
    clock.now += 1.0  # a alone: 1 s
    b = busy.start()
    clock.now += 2.0  # a and b: 1 s each
    assert busy.end(a) == pytest.approx(2.0)
    clock.now += 5.0  # idle time is nobody's: b alone for 5 s
    assert busy.end(b) == pytest.approx(6.0)
    clock.now += 10.0  # idle
    c = busy.start()
    clock.now += 0.5
    assert busy.end(c) == pytest.approx(0.5)


def test_shares_add_up_to_the_busy_time() -> None:
    rng = random.Random(3)
    clock = Clock()
    busy = BusyShares(clock)
    open_marks: list[float] = []
    shares: list[float] = []
    busy_s = 0.0
    for _ in range(2000):
        step = rng.random()
        if open_marks:
            busy_s += step
        clock.now += step
        if open_marks and rng.random() < 0.5:
            shares.append(busy.end(open_marks.pop(rng.randrange(len(open_marks)))))
        else:
            open_marks.append(busy.start())
    while open_marks:
        clock.now += 0.1
        busy_s += 0.1
        shares.append(busy.end(open_marks.pop()))
    assert sum(shares) == pytest.approx(busy_s, rel=1e-9)
    assert min(shares) >= 0
