"""Faults injected into a job process through the runner's ``on_record`` (module level, so
that they pickle across ``spawn``): nothing in the production code or its settings knows
them. ``tests.faults.crashing_worker`` puts one into a real Celery worker; the watchdog's
tests hand one to a ``Supervisor`` or a ``LocalExecutor``."""

from __future__ import annotations

import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any


def kill_worker_at_second_iteration(record: dict[str, Any]) -> None:
    """SIGKILL the worker that runs this job process, and the job process: a lost machine."""
    if record["iteration"] >= 2:
        os.kill(os.getppid(), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)


def hang_at_second_iteration(record: dict[str, Any]) -> None:
    """Never return once iteration 2 is done: a deadlocked loader, a stuck kernel."""
    if record["iteration"] >= 2:
        while True:
            time.sleep(3600)


def hung_marker(pid: int) -> Path:
    """The file :func:`mark_and_hang_at_second_iteration` creates in job process ``pid``."""
    return Path(tempfile.gettempdir()) / f"bilevel-test-hung-{pid}"


def mark_and_hang_at_second_iteration(record: dict[str, Any]) -> None:
    """:func:`hang_at_second_iteration`, saying so first in :func:`hung_marker`: a test then
    knows the job process holds its claim, and kills it from outside."""
    mark_and_hang_at(2, record)


def mark_and_hang_at(iteration: int, record: dict[str, Any]) -> None:
    """Once ``iteration`` is done, say so in :func:`hung_marker` and never return (bind
    ``iteration`` with ``functools.partial``, which pickles)."""
    if record["iteration"] >= iteration:
        hung_marker(os.getpid()).touch()
        while True:
            time.sleep(3600)


FAULTS = {
    "kill": kill_worker_at_second_iteration,
    "hang": hang_at_second_iteration,
}
