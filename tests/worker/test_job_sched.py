"""BILEVEL_JOB_SCHED: the job process's compute runs in the CPU class the setting names,
and the threads it starts afterwards (torch's) inherit it."""

from __future__ import annotations

import os
import threading

import pytest

from worker.job_process import _schedule
from worker.settings import WorkerSettings

pytestmark = pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="Linux CPU classes")


def _policy_in_thread(policy: str) -> tuple[int, int]:
    """``(the thread's class after _schedule, the class of a thread it then starts)``."""
    seen: dict[str, int] = {}

    def child() -> None:
        seen["child"] = os.sched_getscheduler(0)

    def body() -> None:
        _schedule(policy)
        seen["self"] = os.sched_getscheduler(0)
        t = threading.Thread(target=child)
        t.start()
        t.join()

    t = threading.Thread(target=body)  # sched_setscheduler(0) is per thread on Linux
    t.start()
    t.join()
    return seen["self"], seen["child"]


@pytest.mark.parametrize(
    ("policy", "expected"),
    [("idle", "SCHED_IDLE"), ("batch", "SCHED_BATCH"), ("normal", "SCHED_OTHER")],
)
def test_the_job_thread_and_its_children_run_in_the_named_class(policy, expected):
    assert _policy_in_thread(policy) == (getattr(os, expected),) * 2
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the test's own thread is untouched


def test_the_setting_reads_from_the_environment_and_refuses_other_classes(monkeypatch):
    monkeypatch.setenv("BILEVEL_JOB_SCHED", "idle")
    assert WorkerSettings().job_sched == "idle"
    monkeypatch.setenv("BILEVEL_JOB_SCHED", "fifo")
    with pytest.raises(ValueError, match="job_sched"):
        WorkerSettings()
