"""Each request's share of a model server's busy time (GPU-seconds for chargeback).

While ``n`` requests are in flight on a replica, each is charged ``dt / n`` of every
interval ``dt``: the shares of the requests a replica served add up to the time it was
busy. One running sum makes it O(1) per request: ``_shared`` grows by ``dt / n`` between
events, and a request's share is its growth from the request's start to its end.

The count is this process's: replicas shared by several gateway processes are charged
per process (each process divides only among its own requests), so with several API
replicas the shares add up to more than the server's busy time.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class BusyShares:
    """The running share of one replica's busy time (see the module docstring)."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter):
        self._clock = clock
        self._shared = 0.0
        self._at = clock()
        self._inflight = 0

    def _advance(self) -> float:
        now = self._clock()
        if self._inflight:
            self._shared += (now - self._at) / self._inflight
        self._at = now
        return self._shared

    def start(self) -> float:
        """A request starts; returns its mark (give it to ``end``)."""
        mark = self._advance()
        self._inflight += 1
        return mark

    def end(self, mark: float) -> float:
        """A request ends; returns its share of the busy time since its mark, in seconds."""
        share = self._advance() - mark
        self._inflight = max(0, self._inflight - 1)
        return share
