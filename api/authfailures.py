"""Failed authentications per client address: after ``limit`` in a window, a 429.

A client that presents wrong or revoked keys ``limit`` times within ``window_s`` seconds is
refused with 429 (``Retry-After``: the seconds left of its window) on every request that
needs a key, before its key is checked, until the window ends; other addresses are not
affected. A request without any key is not a guess and does not count.

The counts are kept in each API process (a fixed window per address): with ``P`` API
processes behind a balancer a client may guess up to ``P x limit`` keys per window, and a
blocked address may still reach another process. That bounds brute force well enough next
to a key's 128 random bits; a deployment that wants one count may keep its API in one
process per address (sticky balancing) or lower the limit. Behind a reverse proxy the
address is the proxy's unless uvicorn runs with ``--proxy-headers`` (``X-Forwarded-For``).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

__all__ = ["AuthFailures"]

# at most this many addresses are remembered; beyond it, those whose window ended are dropped
_PRUNE_AT = 10_000


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
