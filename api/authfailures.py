"""Failed authentications per client address: after ``limit`` in a window, a 429.

A client that presents wrong or revoked keys ``limit`` times within ``window_s`` seconds is
refused with 429 (``Retry-After``: the seconds left of its window) on every request that
needs a key, before its key is checked, until the window ends; other addresses are not
affected. A request without any key is not a guess and does not count.

The count is one for the whole service: the distributed mode keeps it in Redis
(:class:`RedisAuthFailures`, a fixed window per address: one atomic ``INCR`` that starts
the window's expiry on the first failure), so with ``P`` API processes behind a balancer
an address still gets ``limit`` guesses per window, not ``P x limit``, and an address
blocked by one process is blocked by all. The embedded mode has one API process and keeps
the count in it (:class:`AuthFailures`). When Redis does not answer, failures are not
counted and nobody is blocked, with a warning: a throttle must never turn a broker outage
into an API outage. Behind a reverse proxy the address is the proxy's unless uvicorn runs
with ``--proxy-headers`` (``X-Forwarded-For``).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Protocol

from api.redisconn import LoopRedis, is_redis_url

__all__ = [
    "BLOCKED_LUA",
    "AuthFailures",
    "FailureCounter",
    "RedisAuthFailures",
    "make_auth_failures",
]

log = logging.getLogger(__name__)

# at most this many addresses are remembered; beyond it, those whose window ended are dropped
_PRUNE_AT = 10_000


class FailureCounter(Protocol):
    """What the API asks of a failed-authentication counter."""

    async def aretry_after(self, address: str) -> int:
        """Seconds until ``address`` may try again (at least 1), or 0 when not blocked."""
        ...

    async def afailed(self, address: str) -> None:
        """Count one failed authentication from ``address``."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class AuthFailures:
    """Fixed-window counts of failed authentications by client address, in this process.

    Args:
        limit: failures that block an address for the rest of its window; 0 turns it off.
        window_s: the window's length in seconds, from the address's first failure.
        clock: monotonic seconds (tests pass a fake one).
    """

    def __init__(self, limit: int, window_s: float, *, clock: Callable[[], float] = time.monotonic):
        self.limit, self.window_s, self.clock = limit, window_s, clock
        self._windows: dict[str, tuple[float, int]] = {}  # address -> (window start, failures)
        self._lock = threading.Lock()

    def retry_after(self, address: str) -> int:
        """Seconds until ``address`` may try again (at least 1), or 0 when it is not blocked."""
        if self.limit <= 0:
            return 0
        with self._lock:
            start, failures = self._windows.get(address, (0.0, 0))
            left = start + self.window_s - self.clock()
            if failures < self.limit or left <= 0:
                return 0
            return max(1, math.ceil(left))

    def failed(self, address: str) -> None:
        """Count one failed authentication from ``address``."""
        if self.limit <= 0:
            return
        with self._lock:
            now = self.clock()
            start, failures = self._windows.get(address, (now, 0))
            if now - start >= self.window_s:
                start, failures = now, 0
            self._windows[address] = (start, failures + 1)
            if len(self._windows) > _PRUNE_AT:
                self._windows = {a: w for a, w in self._windows.items()
                                 if now - w[0] < self.window_s}  # fmt: skip

    async def aretry_after(self, address: str) -> int:
        """:meth:`retry_after`, for the event loop: it never waits on I/O."""
        return self.retry_after(address)

    async def afailed(self, address: str) -> None:
        """:meth:`failed`, for the event loop."""
        self.failed(address)

    async def aclose(self) -> None:
        """Nothing to release."""


# KEYS[1]: the address's counter; ARGV[1]: the window in ms. The window starts (its expiry is
# set) with the first failure and is not extended by later ones: a fixed window.
_FAIL = """
local n = redis.call('INCR', KEYS[1])
if n == 1 or redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return n
"""

# blocked_ms(counter, limit): the ms left of a blocked window, else 0 (also used by
# api.ratelimit's script that checks it and takes a token in one round trip)
BLOCKED_LUA = """
local function blocked_ms(key, limit)
  local n = tonumber(redis.call('GET', key) or '0')
  if n < limit then return 0 end
  local left = redis.call('PTTL', key)
  if left < 0 then return 0 end
  return left
end
"""
# KEYS[1]: the counter; ARGV[1]: the limit.
_BLOCKED = BLOCKED_LUA + "return blocked_ms(KEYS[1], tonumber(ARGV[1]))\n"


class RedisAuthFailures:
    """Fixed-window failure counts in Redis, shared by every API process on ``namespace``.

    Args:
        url: the Redis URL (the broker's).
        limit: failures that block an address for the rest of its window; 0 turns it off.
        window_s: the window's length in seconds.
        namespace: the key prefix (the queue prefix: one per deployment).
    """

    def __init__(self, url: str, limit: int, window_s: float, *, namespace: str = "bilevel",
                 timeout_s: float = 0.25, retry_after_failure_s: float = 5.0):  # fmt: skip
        self.limit, self.window_s, self.namespace, self.url = limit, window_s, namespace, url
        self._redis = LoopRedis(
            url, {"fail": _FAIL, "blocked": _BLOCKED}, timeout_s=timeout_s,
            retry_after_failure_s=retry_after_failure_s, logger=log,
        )  # fmt: skip

    def key(self, address: str) -> str:
        """The Redis key of ``address``'s counter."""
        return f"{self.namespace}:authfail:{address}"

    async def aretry_after(self, address: str) -> int:
        """Seconds left of ``address``'s window once it reached the limit, else 0."""
        if self.limit <= 0 or self._redis.down():
            return 0
        try:
            left_ms = await self._redis.run("blocked", [self.key(address)], [self.limit])
        except Exception as exc:  # any Redis trouble: fail open
            self._redis.failed("failed-authentication limit", exc)
            return 0
        return max(1, math.ceil(int(left_ms) / 1000)) if int(left_ms) > 0 else 0

    async def afailed(self, address: str) -> None:
        """Count one failed authentication from ``address`` in Redis."""
        if self.limit <= 0 or self._redis.down():
            return
        try:
            await self._redis.run(
                "fail", [self.key(address)], [max(1, math.ceil(self.window_s * 1000))]
            )
        except Exception as exc:
            self._redis.failed("failed-authentication limit", exc)

    async def aclose(self) -> None:
        """Close the asyncio client (on its own loop)."""
        await self._redis.aclose()


def make_auth_failures(
    limit: int, window_s: float, broker_url: str | None, namespace: str
) -> FailureCounter:
    """Counts in Redis when the broker is Redis (distributed mode), else in this process."""
    if is_redis_url(broker_url) and broker_url is not None:
        return RedisAuthFailures(broker_url, limit, window_s, namespace=namespace)
    return AuthFailures(limit, window_s)
