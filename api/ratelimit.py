"""Per-key rate limit: a token bucket per credential (API key id, else tenant/user).

``rate_limit_rps`` tokens per second refill each bucket up to ``rate_limit_burst``; a
request takes one token or is refused with 429 and a ``Retry-After`` of the seconds
until a token is back. Buckets idle long enough to be full again are dropped, so memory
stays bounded by the keys active in the last ``burst / rate`` seconds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from acl.models import Principal
from core.errors import RateLimited
from core.metrics import RATE_LIMITED


class RateLimiter:
    def __init__(
        self, *, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic
    ):
        self._rate = rate_per_s
        self._burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, updated_at)
        self._swept_at = clock()

    @property
    def enabled(self) -> bool:
        return self._rate > 0

    @staticmethod
    def key_of(principal: Principal) -> str:
        return principal.key_id or f"{principal.tenant}/{principal.user_id}"

    def check(self, principal: Principal) -> None:
        """Take one token for ``principal``'s credential, or raise ``RateLimited``."""
        if not self.enabled:
            return
        now = self._clock()
        key = self.key_of(principal)
        tokens, updated = self._buckets.get(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - updated) * self._rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            RATE_LIMITED.labels(principal.tenant).inc()
            wait = math.ceil((1.0 - tokens) / self._rate)
            raise RateLimited(
                f"rate limit of {self._rate:g} requests/s (burst {self._burst:g}) exceeded "
                f"for this key; retry after {wait} s",
                retry_after_s=wait,
            )
        self._buckets[key] = (tokens - 1.0, now)
        self._sweep(now)

    def _sweep(self, now: float) -> None:
        full_after = self._burst / self._rate
        if now - self._swept_at < full_after:
            return
        self._swept_at = now
        self._buckets = {
            key: (tokens, at)
            for key, (tokens, at) in self._buckets.items()
            if now - at < full_after
        }
