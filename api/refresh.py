"""Readings of the store that every request shares and one thread renews: stale while it does.

``/v1/pool`` and ``/metrics`` answer from a reading kept per API process. Once it is older
than its interval, the request that notices starts one background thread to read again and
is answered, like the others meanwhile, from the last reading: no request waits for the
store's aggregates except a process's very first.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

__all__ = ["Reading"]

log = logging.getLogger(__name__)


class Reading:
    """The renewals of one shared reading: at most one at a time, each in its own thread."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.lock = threading.Lock()  # held by the one renewal under way

    def renew(self, read: Callable[[], None]) -> None:
        """Run ``read`` in a thread of its own, unless a renewal is under way already.

        ``read`` stores what it read itself; if it fails, the last reading stays and the
        next stale request tries again.
        """
        if self.lock.acquire(blocking=False):
            threading.Thread(target=self._run, args=(read,), daemon=True).start()

    def _run(self, read: Callable[[], None]) -> None:
        try:
            read()
        except Exception:
            log.warning("could not renew %s", self.what, exc_info=True)
        finally:
            self.lock.release()
