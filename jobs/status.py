"""The job's statuses: the one place their names are written in Python.

A ``StrEnum`` so that a status compares equal to, and serialises as, its plain name: the
database column, the REST API and the CLI's output keep the strings they always had.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["ACTIVE", "STATUSES", "TERMINAL", "JobStatus"]


class JobStatus(StrEnum):
    """Where a job is in its life: ``queued -> running -> succeeded | failed | cancelled``.

    A search study's member may also end ``pruned``: its study's pruner stopped it.

    A running job goes back to ``queued`` when its worker releases it (preemption, shutdown)
    or its lease expires, and resumes from its last checkpoint.
    """

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    #: a search study's member its pruner stopped at a hyper-iteration (trace kept)
    PRUNED = "pruned"

    @property
    def terminal(self) -> bool:
        """Whether the job has stopped for good (no transition leaves this status)."""
        return self in TERMINAL


#: Every status, in the order of a job's life (the database's CHECK constraint lists these).
STATUSES: tuple[JobStatus, ...] = tuple(JobStatus)
#: The statuses a job never leaves.
TERMINAL: frozenset[JobStatus] = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.PRUNED}
)
#: The statuses that count against a team's quotas.
ACTIVE: tuple[JobStatus, ...] = (JobStatus.QUEUED, JobStatus.RUNNING)
