"""How one delivery of a job ended in this worker: what the runner returns to its caller."""

from __future__ import annotations

from enum import StrEnum

from jobs.status import JobStatus

__all__ = ["Outcome"]


class Outcome(StrEnum):
    """What :func:`worker.runner.execute_job` ended with.

    The final statuses keep :class:`~jobs.status.JobStatus`'s values; the others say
    why this delivery did not bring the job to one of them.
    """

    SUCCEEDED = JobStatus.SUCCEEDED.value
    FAILED = JobStatus.FAILED.value
    CANCELLED = JobStatus.CANCELLED.value
    PRUNED = JobStatus.PRUNED.value
    # not claimed: a duplicate delivery, or a job that is no longer queued
    SKIPPED = "skipped"
    # not claimed: every team with queued jobs runs its running limit; they stay queued
    DEFERRED = "deferred"
    # the process is shutting down, or the scheduler preempted the job: it was
    # checkpointed and put back in the queue
    RELEASED = "released"
    # the lease was taken away meanwhile (the reaper gave the job to another attempt)
    LOST = "lost"
    # the store stayed unreachable past store_patience_s; the reaper requeues the job
    STORE_UNAVAILABLE = "store-unavailable"
    # the job's process died under its supervisor (worker.watchdog): an OOM kill, a
    # segfault; the supervisor requeued the job at once (FAILED when out of attempts)
    CRASHED = "crashed"

    @property
    def claimed(self) -> bool:
        """Whether this delivery held the job (its team's running count changed as it ended)."""
        return self not in (Outcome.SKIPPED, Outcome.DEFERRED)
