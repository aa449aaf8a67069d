"""Per-key rate limits: a token bucket of ``burst`` tokens refilled at ``rate`` per second.

Each request takes one token; an empty bucket answers 429 with ``Retry-After`` (whole
seconds until a token is back, at least 1). The embedded mode keeps the buckets in this
process; the distributed mode keeps them in Redis, updated by one Lua script (atomic, on
Redis's own clock), so that every API process draws on the same budget. When Redis does
not answer, requests are let through with a warning: a limiter must never turn a broker
outage into an API outage.

The API awaits :meth:`RateLimiter.atake`: in-process buckets answer at once and the Redis
buckets use redis-py's asyncio client, so a request spends no thread-pool hop on its token.
A request with a key this process has verified asks :func:`take_unless_blocked`: its
address's failed-authentication check (``api.authfailures``) and its token in one Lua
script, one Redis round trip instead of two (each is a wake-up of the API's event loop and
of Redis, the CPU a dashboard's polls are made of).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from api.authfailures import BLOCKED_LUA, FailureCounter, RedisAuthFailures
from api.redisconn import LoopRedis, is_redis_url

__all__ = [
    "TAKE_LUA",
    "Decision",
    "MemoryBuckets",
    "RateLimiter",
    "RedisBuckets",
    "make_rate_limiter",
    "take_unless_blocked",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    """Whether a request may go on, and when to retry if not.

    Attributes:
        allowed: a token was taken.
        retry_after_s: whole seconds until a token is back (``Retry-After``), at least 1
            when refused; 0 when allowed.
    """

    allowed: bool
    retry_after_s: int = 0


class RateLimiter(Protocol):
    """What the API asks of a limiter: a token per request, and closing at shutdown."""

    async def atake(self, key: str) -> Decision:
        """Take one token from ``key``'s bucket."""
        ...

    async def aclose(self) -> None:
        """Release the limiter's connections."""
        ...


def _refused(wait_s: float) -> Decision:
    return Decision(False, max(1, math.ceil(wait_s)))


class MemoryBuckets:
    """Token buckets in this process (the embedded mode has one API process)."""

    def __init__(self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic):
        self.rate, self.burst, self.clock = rate, burst, clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, key: str) -> Decision:
        """Take one token from ``key``'s bucket, refilled for the time since its last take."""
        with self._lock:
            now = self.clock()
            tokens, at = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return Decision(True)
            self._buckets[key] = (tokens, now)
            return _refused((1.0 - tokens) / self.rate)

    async def atake(self, key: str) -> Decision:
        """:meth:`take`, for the API's event loop: it never waits on I/O."""
        return self.take(key)

    async def aclose(self) -> None:
        """Nothing to release."""


# take(bucket, rate per second, burst) -> {allowed, seconds to wait}. The time comes from
# Redis so that API processes on several machines agree on it.
TAKE_LUA = """
local function take(key, rate, burst)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
  local b = redis.call('HMGET', key, 'tokens', 'at')
  local tokens = tonumber(b[1])
  local at = tonumber(b[2])
  if tokens == nil or at == nil then tokens = burst; at = now end
  tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
  local allowed = 0
  local wait = 0
  if tokens >= 1 then
    tokens = tokens - 1
    allowed = 1
  else
    wait = (1 - tokens) / rate
  end
  redis.call('HSET', key, 'tokens', tostring(tokens), 'at', tostring(now))
  redis.call('PEXPIRE', key, math.ceil(burst / rate * 1000) + 1000)
  return {allowed, tostring(wait)}
end
"""
# KEYS[1]: the bucket; ARGV: rate per second, burst.
_TAKE = TAKE_LUA + "return take(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))\n"
# KEYS[1]: the bucket, KEYS[2]: an address's failed-authentication counter; ARGV: rate,
# burst, the failure limit (0: off). An address at its limit takes no token: {0, '0', ms
# left of its window}; else {allowed, seconds to wait, 0}.
_TAKE_UNLESS_BLOCKED = (
    TAKE_LUA
    + BLOCKED_LUA
    + """
local limit = tonumber(ARGV[3])
if limit > 0 then
  local left = blocked_ms(KEYS[2], limit)
  if left > 0 then return {0, '0', left} end
end
local r = take(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))
return {r[1], r[2], 0}
"""
)


class RedisBuckets:
    """Token buckets in Redis, shared by every API process on the same ``namespace``."""

    def __init__(
        self,
        url: str,
        rate: float,
        burst: int,
        *,
        namespace: str = "bilevel",
        timeout_s: float = 0.25,
        retry_after_failure_s: float = 5.0,
    ):
        self.rate, self.burst, self.namespace, self.url = rate, burst, namespace, url
        self._redis = LoopRedis(
            url, {"take": _TAKE, "take_unless_blocked": _TAKE_UNLESS_BLOCKED},
            timeout_s=timeout_s,
            retry_after_failure_s=retry_after_failure_s, logger=log,
        )  # fmt: skip

    async def atake(self, key: str) -> Decision:
        """Take a token from the key's bucket in Redis (redis-py's asyncio client)."""
        if self._redis.down():
            return Decision(True)
        try:
            allowed, wait = await self._redis.run(
                "take", [f"{self.namespace}:ratelimit:{key}"], [self.rate, self.burst]
            )
        except Exception as exc:  # any Redis trouble: fail open
            self._redis.failed("rate limiter", exc)
            return Decision(True)
        return Decision(True) if int(allowed) else _refused(float(wait))

    async def atake_unless_blocked(
        self, key: str, failures: RedisAuthFailures, address: str
    ) -> tuple[int, Decision]:
        """``failures.aretry_after(address)`` and, unless blocked, :meth:`atake`: one trip.

        For a key this process has already verified (``api.deps.get_principal``): the
        failed-authentication check and the token are one Lua script, so the request costs
        one Redis round trip instead of two, and a blocked address spends no token, as when
        the two are asked in turn. Returns ``(seconds blocked, decision)``; both fail open.
        """
        if self._redis.down():
            return 0, Decision(True)
        try:
            allowed, wait, left_ms = await self._redis.run(
                "take_unless_blocked",
                [f"{self.namespace}:ratelimit:{key}", failures.key(address)],
                [self.rate, self.burst, failures.limit],
            )
        except Exception as exc:  # any Redis trouble: fail open
            self._redis.failed("rate limiter", exc)
            return 0, Decision(True)
        if int(left_ms) > 0:
            return max(1, math.ceil(int(left_ms) / 1000)), Decision(True)
        return 0, (Decision(True) if int(allowed) else _refused(float(wait)))

    async def aclose(self) -> None:
        """Close the asyncio client (on its own loop)."""
        await self._redis.aclose()


async def take_unless_blocked(
    limiter: RateLimiter, failures: FailureCounter, key: str, address: str
) -> tuple[int, Decision]:
    """``(seconds address is blocked, key's decision)``; no token is taken when blocked.

    One Redis round trip when both live in the same Redis (the distributed mode), else the
    two asked in turn (in-process ones cost no I/O).
    """
    if (isinstance(limiter, RedisBuckets) and isinstance(failures, RedisAuthFailures)
            and limiter.url == failures.url):  # fmt: skip
        return await limiter.atake_unless_blocked(key, failures, address)
    blocked_s = await failures.aretry_after(address)
    if blocked_s:
        return blocked_s, Decision(True)
    return 0, await limiter.atake(key)


class _Unlimited:
    async def atake(self, key: str) -> Decision:
        return Decision(True)

    async def aclose(self) -> None:
        pass


def make_rate_limiter(
    rate: float, burst: int, broker_url: str | None, namespace: str
) -> RateLimiter:
    """Redis buckets when the broker is Redis (distributed mode), else in-process ones.

    A ``rate`` of 0 turns the limit off.
    """
    if rate <= 0:
        return _Unlimited()
    if broker_url and is_redis_url(broker_url):
        return RedisBuckets(broker_url, rate, burst, namespace=namespace)
    return MemoryBuckets(rate, burst)
