"""Store writes retried through connection failures (a restarted or failing-over database)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import InterfaceError, OperationalError

from worker.errors import StoreUnavailable

__all__ = ["retrying"]

log = logging.getLogger(__name__)
T = TypeVar("T")


def retrying(fn: Callable[[], T], patience_s: float) -> T:
    """``fn()``, retried with backoff while the database connection fails.

    A restarted PostgreSQL costs one failed attempt (the pool pre-pings afterwards). Trace
    inserts ignore rows already present, so retrying a commit that did land is harmless.

    Args:
        fn: one whole transaction, begun and committed inside it.
        patience_s: how long to go on retrying before giving up.

    Returns:
        What ``fn`` returned.

    Raises:
        StoreUnavailable: the store still failed after ``patience_s``.
    """
    delay, deadline = 0.2, time.monotonic() + patience_s
    while True:
        try:
            return fn()
        except (OperationalError, InterfaceError) as exc:
            if time.monotonic() + delay > deadline:
                raise StoreUnavailable(str(exc).splitlines()[0]) from exc
            log.warning("store unavailable (%s); retrying in %.1fs", type(exc).__name__, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
