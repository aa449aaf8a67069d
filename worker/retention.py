"""Trace retention on the worker side: a compaction pass every ``trace_compact_every_s``.

Run by the reaper (every Celery worker's thread, and the embedded executor's loop) when
``BILEVEL_TRACE_RETENTION_DAYS`` is set. Each pass is bounded (``trace_compact_max_s``, in
batches of ``trace_compact_batch`` jobs, one transaction each) and passes of several
workers take disjoint jobs (``jobs.store.repo.trace_compaction``), so every worker runs it.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from jobs.settings import StoreSettings
from jobs.store import repo

__all__ = ["Retention"]

log = logging.getLogger(__name__)


class Retention:
    """Compacts the traces past the retention when a pass is due; off without a retention."""

    def __init__(self, sessions: sessionmaker[Session], settings: StoreSettings) -> None:
        self._sessions = sessions
        self._settings = settings
        self._next = 0.0

    def maybe_pass(self) -> repo.CompactionPass | None:
        """Run one bounded pass if one is due; ``None`` when none ran."""
        days = self._settings.trace_retention_days
        if days is None or time.monotonic() < self._next:
            return None
        self._next = time.monotonic() + self._settings.trace_compact_every_s
        done = repo.compact_due(
            self._sessions,
            timedelta(days=days),
            batch=self._settings.trace_compact_batch,
            max_s=self._settings.trace_compact_max_s,
        )
        if done.jobs:
            log.info("compacted the traces of %d job(s), %d points", done.jobs, done.points)
        return done
