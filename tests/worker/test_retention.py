"""The reaper's compaction pass: off without a retention, then at most once per period."""

from __future__ import annotations

from jobs.settings import StoreSettings
from worker.retention import Retention


def test_a_pass_runs_only_with_a_retention_and_once_per_period(sqlite_sessions):
    off = Retention(sqlite_sessions, StoreSettings(trace_retention_days=None))
    assert off.maybe_pass() is None
    on = Retention(sqlite_sessions, StoreSettings(trace_retention_days=7,
                                                  trace_compact_every_s=3600))  # fmt: skip
    first = on.maybe_pass()
    assert first is not None and first.done and first.jobs == 0
    assert on.maybe_pass() is None  # the next one is due in an hour
