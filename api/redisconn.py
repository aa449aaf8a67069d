"""One asyncio Redis client per event loop, with a pause after a failure.

redis-py's asyncio client belongs to the loop it was made on: an API process has one, a
test client may run several in turn, so the client is remade when the loop changes. The
shared throttles (``api.ratelimit``, ``api.authfailures``) fail open when Redis does not
answer, and then skip it for ``retry_after_failure_s``: each try would cost a timeout per
request while it is down.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported when first used: the embedded mode runs without Redis
    import redis.asyncio
    from redis.commands.core import AsyncScript

__all__ = ["LoopRedis", "is_redis_url"]

log = logging.getLogger(__name__)


def is_redis_url(url: str | None) -> bool:
    """Whether ``url`` names a Redis server (the distributed mode's broker)."""
    return bool(url) and str(url).startswith(("redis://", "rediss://", "unix://"))


class LoopRedis:
    """Lua scripts on a Redis client made for the running event loop, each call bounded.

    Args:
        url: the Redis URL.
        scripts: name -> Lua source, registered on each new client.
        timeout_s: the connect timeout, and the bound on each call of :meth:`run`.
        retry_after_failure_s: how long :meth:`down` says to skip Redis after a failure.
        logger: where the warning of a failure goes (the throttle's own module's logger).
    """

    def __init__(self, url: str, scripts: dict[str, str], *, timeout_s: float = 0.25,
                 retry_after_failure_s: float = 5.0, logger: logging.Logger = log):  # fmt: skip
        self._url, self._sources, self._timeout_s = url, scripts, timeout_s
        self._log = logger
        self.retry_after_failure_s = retry_after_failure_s
        self._client: tuple[asyncio.AbstractEventLoop, redis.asyncio.Redis,
                            dict[str, AsyncScript]] | None = None  # fmt: skip
        self._down_until = 0.0

    def script(self, name: str) -> AsyncScript:
        """The script ``name`` on this loop's client (made on first use)."""
        import redis.asyncio

        loop = asyncio.get_running_loop()
        if self._client is None or self._client[0] is not loop:
            # socket_timeout off (redis-py 8 defaults it to 5 s): with it, each send is bounded
            # by asyncio.wait_for, a task per call on Python 3.11; :meth:`run` bounds the
            # whole call with one asyncio.timeout instead
            client = redis.asyncio.Redis.from_url(
                self._url, socket_timeout=None, socket_connect_timeout=self._timeout_s
            )
            scripts = {n: client.register_script(src) for n, src in self._sources.items()}
            self._client = (loop, client, scripts)
        return self._client[2][name]

    async def run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """Run the script ``name``; ``TimeoutError`` past ``timeout_s`` in all.

        A call cut off by the timeout disconnects its connection (redis-py does on any
        exception while reading), so no late reply is read by the next call.
        """
        async with asyncio.timeout(self._timeout_s):
            return await self.script(name)(keys=keys, args=args)

    def down(self) -> bool:
        """Whether Redis failed less than ``retry_after_failure_s`` ago (skip it)."""
        return time.monotonic() < self._down_until

    def failed(self, what: str, exc: BaseException) -> None:
        """Note a failure: skip Redis for a while, with one warning naming ``what`` was off."""
        self._down_until = time.monotonic() + self.retry_after_failure_s
        self._log.warning("%s: Redis unavailable (%s); not limiting for %.0f s",
                          what, exc, self.retry_after_failure_s)  # fmt: skip

    async def aclose(self) -> None:
        """Close the client (on its own loop)."""
        if self._client is not None and self._client[0] is asyncio.get_running_loop():
            await self._client[1].aclose()
        self._client = None
