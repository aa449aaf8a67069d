"""The lease's heartbeat: a thread that renews a running job's lease between flushes."""

from __future__ import annotations

import logging
import threading

from sqlalchemy.orm import Session, sessionmaker

from jobs.store import repo
from jobs.store.repo import LeaseState

__all__ = ["Heartbeat"]

log = logging.getLogger(__name__)


class Heartbeat(threading.Thread):
    """Renews the lease between flushes, so that one long hyper-iteration keeps its job.

    A thread of its own, apart from the trace writer: while the store is down the writer sits
    in its retries' backoff, and when the store is back the lease must be renewed within a
    lease's time, before the reaper gives the job away (``worker.tasks._reaper_loop``).

    Attributes:
        state: ``LeaseState.OK``, or the last other answer of :func:`jobs.store.repo.heartbeat`
            (``CANCEL``, ``LOST``), for the training loop to act on.
    """

    def __init__(self, sessions: sessionmaker[Session], claim: repo.Claim, lease_s: float):
        super().__init__(daemon=True, name=f"heartbeat-{claim.job_id}")
        self.sessions, self.claim, self.lease_s = sessions, claim, lease_s
        self.state = LeaseState.OK
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.lease_s / 3):
            try:
                with self.sessions.begin() as s:
                    state = repo.heartbeat(s, self.claim, self.lease_s)
                if state != LeaseState.OK:
                    self.state = state
            except Exception:  # a database blip: the next beat tries again
                log.warning("heartbeat failed for %s", self.claim.job_id, exc_info=True)

    def stop(self) -> None:
        """End the thread at its next wake-up (it holds no transaction while it waits)."""
        self._halt.set()
