"""A Celery worker that kills itself in the jobs of one name: the fault suite's crash loop.

    python -m tests.faults.crashing_worker NAME -A worker.app worker --pool solo -Q ...

Any job whose spec is named ``NAME`` SIGKILLs this worker process at its second iteration,
as an OOM kill or a segfault would. The hook goes in through the runner's ``on_record``
argument: this module wraps ``worker.runner.execute_job`` and then runs Celery's own command
line in this same process (the tests know a worker by its pid), so that the production code
and its settings carry no test knob. Not a test module: ``CrashingWorker`` starts it.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import uuid
from collections.abc import Callable
from typing import Any

from jobs import repo
from worker import runner


def _kill_at_second_iteration(record: dict[str, Any]) -> None:
    if record["iteration"] >= 2:
        os.kill(os.getpid(), signal.SIGKILL)


def install(job_name: str) -> None:
    """Make ``runner.execute_job`` run the jobs named ``job_name`` with the fatal hook."""
    execute_job: Callable[..., Any] = runner.execute_job

    @functools.wraps(execute_job)
    def crashing(sessions, job_id, settings, **kwargs):
        with sessions() as s:
            job = repo.get_job(s, None, uuid.UUID(str(job_id)))
            name = job.spec.get("name") if job is not None else None
        if name == job_name:
            kwargs["on_record"] = _kill_at_second_iteration
        return execute_job(sessions, job_id, settings, **kwargs)

    # worker.tasks looks the function up on the module at every task, so this is what runs
    runner.execute_job = crashing


def main(argv: list[str] | None = None) -> None:
    """``NAME`` then Celery's arguments (what follows ``celery`` on its command line)."""
    job_name, *celery_args = sys.argv[1:] if argv is None else argv
    install(job_name)
    from celery.__main__ import main as celery_main

    sys.argv = ["celery", *celery_args]
    celery_main()


if __name__ == "__main__":
    main()
