"""A Celery worker with a fault in the jobs of one name: the fault suite's bad workers.

    python -m tests.faults.crashing_worker FAULT NAME -A worker.app worker --pool solo -Q ...

Any job whose spec is named ``NAME`` runs with ``FAULT`` from ``tests.faults.hooks.FAULTS``:
``kill`` SIGKILLs this worker (and its job process) at the job's second iteration, as a
lost machine would; ``hang`` never returns from it, as a deadlocked data loader would. The
hook goes in through the job process's ``on_record`` argument: this module wraps
``worker.job_process.JobProcess.run`` (which is handed the job claimed, not only the one the
message named) and then runs Celery's own command line in this same process (the tests know
a worker by its pid), so that the production code and its settings carry no test knob. Not
a test module: ``CrashingWorker`` starts it.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

from jobs import repo
from tests.faults.hooks import FAULTS
from worker.job_process import JobProcess


def install(fault: str, job_name: str) -> None:
    """Make the job process run the jobs named ``job_name`` with the hook ``fault``."""
    run: Callable[..., Any] = JobProcess.run
    hook = FAULTS[fault]

    @functools.wraps(run)
    def faulty(self, claim, on_record):
        from worker.tasks import sessions

        with sessions()() as s:
            job = repo.get_job(s, None, claim.job_id)
            name = job.spec.get("name") if job is not None else None
        return run(self, claim, hook if name == job_name else on_record)

    # the supervisor calls the method on its job process at every job, so this is what runs
    JobProcess.run = faulty  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> None:
    """``FAULT NAME`` then Celery's arguments (what follows ``celery`` on its command line)."""
    fault, job_name, *celery_args = sys.argv[1:] if argv is None else argv
    install(fault, job_name)
    from celery.__main__ import main as celery_main

    sys.argv = ["celery", *celery_args]
    celery_main()


if __name__ == "__main__":
    main()
