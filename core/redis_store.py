"""The shared store every API replica reaches: Redis, through redis-py's asyncio client.

The only module that imports ``redis``. It keeps bounded counters (budgets: reserve a
worst case, then settle to what was used, each step one Lua script, so concurrent
requests on any number of replicas can never overshoot a limit) and cached entries
(bytes with a time to live, and short lists of the newest entries).

A counter is three keys (its totals hash ``used``/``reserved``, the pending reservations'
deadlines, their amounts). Every key of one tenant carries the hash tag ``{tenant}``
(``counter_key``), so a script's keys share one slot: the scripts also run on a Redis
Cluster. A reservation that is never settled (its process died) expires after its time
to live and is released by the next reservation on the same counter.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError

from core.errors import UpstreamUnavailable

# KEYS: per counter (totals, pending, amounts). ARGV: id, ttl_ms, then per counter
# (limit, amount, expire_s). Returns {0} when reserved, else {i, used, reserved} of the
# first counter (1-based) the amount does not fit.
_RESERVE = """
local id, ttl_ms = ARGV[1], tonumber(ARGV[2])
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = #KEYS / 3
for i = 0, n - 1 do
  local totals, pending, amounts = KEYS[3*i+1], KEYS[3*i+2], KEYS[3*i+3]
  for _, old in ipairs(redis.call('ZRANGEBYSCORE', pending, '-inf', now_ms)) do
    local amount = redis.call('HGET', amounts, old)
    if amount then redis.call('HINCRBY', totals, 'reserved', '-' .. amount) end
    redis.call('HDEL', amounts, old)
    redis.call('ZREM', pending, old)
  end
end
for i = 0, n - 1 do
  local limit, amount = tonumber(ARGV[3 + 3*i]), tonumber(ARGV[4 + 3*i])
  local used = tonumber(redis.call('HGET', KEYS[3*i+1], 'used') or '0')
  local reserved = tonumber(redis.call('HGET', KEYS[3*i+1], 'reserved') or '0')
  if used + reserved + amount > limit then return {i + 1, used, reserved} end
end
for i = 0, n - 1 do
  local totals, pending, amounts = KEYS[3*i+1], KEYS[3*i+2], KEYS[3*i+3]
  local amount, expire_s = ARGV[4 + 3*i], ARGV[5 + 3*i]
  redis.call('HINCRBY', totals, 'reserved', amount)
  redis.call('ZADD', pending, now_ms + ttl_ms, id)
  redis.call('HSET', amounts, id, amount)
  for _, key in ipairs({totals, pending, amounts}) do redis.call('EXPIRE', key, expire_s) end
end
return {0}
"""

# KEYS as above. ARGV: id, then per counter (used, expire_s). Releases the reservation
# (if it has not expired) and adds what was used.
_SETTLE = """
local id = ARGV[1]
for i = 0, #KEYS / 3 - 1 do
  local totals, pending, amounts = KEYS[3*i+1], KEYS[3*i+2], KEYS[3*i+3]
  if redis.call('ZREM', pending, id) == 1 then
    local amount = redis.call('HGET', amounts, id)
    if amount then redis.call('HINCRBY', totals, 'reserved', '-' .. amount) end
    redis.call('HDEL', amounts, id)
  end
  redis.call('HINCRBY', totals, 'used', ARGV[2 + 2*i])
  redis.call('EXPIRE', totals, ARGV[3 + 2*i])
end
return 0
"""


def counter_key(tenant: str, name: str) -> str:
    """The key of a tenant's counter ``name`` (its tenant as the cluster hash tag)."""
    return f"headwater:counter:{{{tenant}}}:{name}"


@dataclass(frozen=True)
class CounterCharge:
    """An amount to reserve on (or settle to) one counter, and the counter's bounds."""

    key: str
    amount: int
    limit: int = 0  # reserve only
    expire_s: int = 86_400  # the counter's keys outlive its period by this much at least


@dataclass(frozen=True)
class CounterRefusal:
    """The first counter a reservation did not fit: its key and what it held."""

    key: str
    used: int
    reserved: int


@dataclass(frozen=True)
class CounterTotals:
    used: int
    reserved: int


def _keys(charges: Sequence[CounterCharge]) -> list[str]:
    return [k for c in charges for k in (c.key, f"{c.key}:pending", f"{c.key}:amounts")]


class SharedStore:
    """Counters and cached entries in Redis (see the module docstring).

    Every method raises ``UpstreamUnavailable`` when Redis cannot be reached: a budget
    that cannot be checked refuses the request (fails closed)."""

    def __init__(self, client: Redis):
        self._client = client
        self._reserve = client.register_script(_RESERVE)
        self._settle = client.register_script(_SETTLE)

    async def reserve(
        self, reservation_id: str, charges: Sequence[CounterCharge], *, ttl_s: float
    ) -> CounterRefusal | None:
        """Reserve every charge, all or none; None when reserved, else the first counter
        whose ``used + reserved + amount`` would pass its limit."""
        args: list[str | int] = [reservation_id, max(1, int(ttl_s * 1000))]
        for charge in charges:
            args += [charge.limit, charge.amount, charge.expire_s]
        try:
            result = await self._reserve(keys=_keys(charges), args=args)
        except RedisError as exc:
            raise _unavailable(exc) from exc
        index = int(result[0])
        if index == 0:
            return None
        return CounterRefusal(charges[index - 1].key, int(result[1]), int(result[2]))

    async def settle(self, reservation_id: str, charges: Sequence[CounterCharge]) -> None:
        """Release the reservation and add each charge's amount to its counter's use."""
        args: list[str | int] = [reservation_id]
        for charge in charges:
            args += [charge.amount, charge.expire_s]
        try:
            await self._settle(keys=_keys(charges), args=args)
        except RedisError as exc:
            raise _unavailable(exc) from exc

    async def totals(self, key: str) -> CounterTotals:
        """What a counter has used and holds reserved now."""
        try:
            values = await self._client.hmget(key, ["used", "reserved"])
        except RedisError as exc:
            raise _unavailable(exc) from exc
        return CounterTotals(int(values[0] or 0), int(values[1] or 0))

    async def get(self, key: str) -> bytes | None:
        try:
            value = await self._client.get(key)
        except RedisError as exc:
            raise _unavailable(exc) from exc
        return value if isinstance(value, bytes) else None

    async def put(self, key: str, value: bytes, *, ttl_s: int) -> None:
        try:
            await self._client.set(key, value, ex=max(1, ttl_s))
        except RedisError as exc:
            raise _unavailable(exc) from exc

    async def recent(self, key: str) -> list[bytes]:
        """The entries of a list kept by ``remember``, newest first."""
        try:
            values = await self._client.lrange(key, 0, -1)
        except RedisError as exc:
            raise _unavailable(exc) from exc
        return [value for value in values if isinstance(value, bytes)]

    async def remember(self, key: str, value: bytes, *, keep: int, ttl_s: int) -> None:
        """Add ``value`` to the front of a list that keeps its ``keep`` newest entries."""
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.lpush(key, value)
                pipe.ltrim(key, 0, keep - 1)
                pipe.expire(key, max(1, ttl_s))
                await pipe.execute()
        except RedisError as exc:
            raise _unavailable(exc) from exc

    async def ping(self) -> bool:
        try:
            return bool(await self._client.ping())
        except (RedisError, OSError):
            return False


def _unavailable(exc: Exception) -> UpstreamUnavailable:
    error = UpstreamUnavailable(
        f"the shared store is unavailable ({type(exc).__name__}); retry later",
        code="shared_store_unavailable",
    )
    error.retry_after_s = 1
    return error


# Connections one process keeps to the store. A request beyond them waits for one to be
# free (up to the timeout) instead of failing: redis-py's default pool raises
# ``MaxConnectionsError`` at once, which refused 14% of a load of 128 concurrent requests
# with 503s (BENCHMARKS.md, gateway capacity).
MAX_CONNECTIONS = 64


@asynccontextmanager
async def open_shared_store(url: str, *, timeout_s: float = 2.0) -> AsyncIterator[SharedStore]:
    """A client of the Redis at ``url`` (``redis://host:port/db``), closed on exit."""
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=timeout_s,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
    )
    client = Redis(connection_pool=pool)
    try:
        yield SharedStore(client)
    finally:
        await client.aclose(close_connection_pool=True)
