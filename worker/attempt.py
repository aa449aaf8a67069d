"""The torch-free ends of an attempt: the claim that starts it and the failure that ends it.

Both run where no job does: in the Celery parent and the embedded executor, which supervise
the job's process (``worker.watchdog``), as well as in :func:`worker.runner.execute_job`.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from jobs.status import JobStatus
from jobs.store import repo
from worker.outcome import Outcome
from worker.retry import retrying
from worker.settings import WorkerSettings

__all__ = ["cancel", "claim", "crashed", "fail", "time_limit", "worker_name"]

log = logging.getLogger(__name__)


def worker_name() -> str:
    """This process as ``jobs.worker`` records it: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def claim(
    sessions: sessionmaker[Session], job_id: uuid.UUID | str, settings: WorkerSettings, worker: str
) -> repo.Claim | Outcome:
    """Claim a job of ``job_id``'s queue kind by weighted fair share.

    The message names a job; the pool's fair share says which queued job of its kind this
    worker takes (the named one, or one that should go first).

    Returns:
        The claim, or ``Outcome.SKIPPED`` (nothing of the kind queued: a duplicate delivery,
        or cancelled) or ``Outcome.DEFERRED`` (every team with queued jobs runs its
        running limit; they stay queued).
    """
    named_id = uuid.UUID(str(job_id))
    policy = repo.Policy.of(settings)

    def claim_it() -> repo.Claim | Outcome:
        with sessions.begin() as s:
            named = repo.get_job(s, None, named_id)
            if named is None:
                return Outcome.SKIPPED
            got = repo.claim_next(s, named.queue, worker, settings.lease_s, policy, hint=named_id)
            if isinstance(got, repo.Claim):
                return got
            return Outcome.DEFERRED if got else Outcome.SKIPPED

    got = retrying(claim_it, settings.store_patience_s)
    if got is Outcome.DEFERRED:
        log.info("job %s: every team with queued jobs runs its max_running_jobs; left queued",
                 job_id)  # fmt: skip
    return got


def time_limit(spec_limit: float | None, settings: WorkerSettings) -> tuple[float, str] | None:
    """The tighter of the spec's limit and the worker's ceiling, with the setting's name."""
    named = [(spec_limit, "time_limit_s"), (settings.max_job_time_s, "max_job_time_s")]
    limits = [(limit, name) for limit, name in named if limit is not None]
    return min(limits) if limits else None


def fail(
    sessions: sessionmaker[Session],
    claim: repo.Claim,
    error: dict[str, Any],
    settings: WorkerSettings,
    *,
    at_stored_trace: bool = False,
) -> Outcome:
    """End the attempt ``failed`` with ``error``; ``Outcome.LOST`` if the lease moved on.

    Args:
        at_stored_trace: the job's process was killed: ``error.iteration`` and the job's
            ``iteration`` are set to its stored trace's last, read in the same transaction
            (what the supervisor was told may be ahead of what was written).
    """
    log.warning("job %s failed: %s", claim.job_id, error["detail"])

    def fail_it() -> bool:
        with sessions.begin() as s:
            if not at_stored_trace:
                return repo.finish_job(s, claim, JobStatus.FAILED, error=error)
            at = repo.stored_iteration(s, claim.job_id)
            return repo.finish_job(s, claim, JobStatus.FAILED, error={**error, "iteration": at},
                                   iteration=at)  # fmt: skip

    failed = retrying(fail_it, settings.store_patience_s)
    return Outcome.FAILED if failed else Outcome.LOST


def cancel(
    sessions: sessionmaker[Session],
    claim: repo.Claim,
    detail: dict[str, Any],
    settings: WorkerSettings,
    *,
    at_stored_trace: bool = False,
) -> Outcome:
    """End the attempt ``cancelled`` (the trace flushed so far is kept); ``LOST`` if it moved on.

    ``detail`` goes in the job's event and its summary (``cancelled_by``, what was killed);
    with ``at_stored_trace``, its ``iteration`` and the job's are the stored trace's last.
    """

    def cancel_it() -> bool:
        with sessions.begin() as s:
            job = repo.get_job(s, None, claim.job_id)
            summary = {**((job.summary if job is not None else None) or {}), **detail}
            at = repo.stored_iteration(s, claim.job_id) if at_stored_trace else None
            if at is not None:
                summary["iteration"] = at
            return repo.finish_job(s, claim, JobStatus.CANCELLED, summary=summary, iteration=at)

    cancelled = retrying(cancel_it, settings.store_patience_s)
    return Outcome.CANCELLED if cancelled else Outcome.LOST


def crashed(
    sessions: sessionmaker[Session],
    claim: repo.Claim,
    exitcode: int | None,
    settings: WorkerSettings,
) -> tuple[Outcome, str | None]:
    """Give up the lease of a job whose process died: back to the queue, or failed.

    Returns:
        ``(Outcome.CRASHED, queue kind)`` when the job went back to the queue (the caller
        sends it again), ``(Outcome.FAILED, None)`` when that was its last attempt, and
        ``(Outcome.LOST, None)`` when the lease had moved on meanwhile.
    """

    def requeue_it() -> tuple[Outcome, str | None]:
        with sessions.begin() as s:
            got = repo.requeue_crashed(s, claim, exitcode)
        if got is None:
            return Outcome.LOST, None
        status, queue = got
        return (Outcome.CRASHED, queue) if status == JobStatus.QUEUED else (Outcome.FAILED, None)

    return retrying(requeue_it, settings.store_patience_s)
