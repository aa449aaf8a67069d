"""The worker's side of a job's life: claim, heartbeat, finish, release, and the reaper.

Every transition is a conditional ``UPDATE ... WHERE status = ...`` so that concurrent
actors (API, worker, reaper) never overwrite each other: a duplicate task delivery claims
nothing, and a worker whose lease was taken away (``attempts`` moved on) writes nothing more.
Each change of status also inserts a ``job_events`` row in the same transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Update,
    and_,
    bindparam,
    func,
    select,
    update,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from jobs.status import TERMINAL, JobStatus
from jobs.store.base import UTCDateTime
from jobs.store.models import Job, utcnow
from jobs.store.repo.events import add_event
from jobs.store.repo.rows import rows_changed
from jobs.store.repo.trace_writes import rewind_trace, stored_iteration

# -- the worker's side -----------------------------------------------------------------------


class LeaseState(StrEnum):
    """What a heartbeat learned about the worker's hold on its job."""

    OK = "ok"  #: the lease is renewed: go on
    CANCEL = "cancel"  #: someone asked the job to stop: end it as cancelled
    LOST = "lost"  #: the lease was taken away (the job moved on): write nothing more
    PREEMPT = "preempt"  #: the scheduler asks the job to yield: checkpoint and requeue


@dataclass(frozen=True)
class Claim:
    """What a worker holds while it runs a job: ``attempt`` fences every later write."""

    job_id: uuid.UUID
    attempt: int
    worker: str


def claim_update(target: ColumnElement[bool]) -> Update:
    """The guarded claim: the queued, uncancelled job ``target`` selects (one at most) runs.

    Built once by each caller (building a statement costs more Python than running it);
    :func:`take_job` supplies the worker and the times as parameters.
    """
    now = bindparam("claim_now", type_=UTCDateTime())
    return (
        update(Job)
        .where(target, Job.status == JobStatus.QUEUED, Job.cancel_requested.is_(False))
        .values(
            status=JobStatus.RUNNING,
            attempts=Job.attempts + 1,
            worker=bindparam("claim_worker"),
            lease_until=bindparam("claim_lease_until", type_=UTCDateTime()),
            started_at=func.coalesce(Job.started_at, now),
            running_since=now,
            preempt_requested=False,
            updated_at=now,
        )
        .returning(Job.id, Job.attempts)
    )


_CLAIM_BY_ID = claim_update(Job.id == bindparam("job_id"))


def claim_job(session: Session, job_id: uuid.UUID, worker: str, lease_s: float) -> Claim | None:
    """Move a queued job to running; ``None`` if it is not queued (duplicate delivery)."""
    claim = take_job(session, _CLAIM_BY_ID, {"job_id": job_id}, worker, lease_s)
    if claim is None:
        cancel_if_requested(session, job_id)
    return claim


def take_job(
    session: Session, claim: Update, params: dict[str, Any], worker: str, lease_s: float
) -> Claim | None:
    """Run a :func:`claim_update` statement with ``params``; record the job's event.

    The one way a job starts running: :func:`claim_job` names the job, the concurrent claim
    (:mod:`jobs.store.repo.claims`) selects a team's head under that team's lock. ``None``
    when the statement matched no queued, uncancelled job.
    """
    now = utcnow()
    times = {"claim_now": now, "claim_lease_until": now + timedelta(seconds=lease_s)}
    row = session.execute(claim, {**params, **times, "claim_worker": worker}).first()
    if row is None:
        return None
    add_event(session, row.id, JobStatus.QUEUED, JobStatus.RUNNING, row.attempts, worker=worker)
    return Claim(job_id=row.id, attempt=row.attempts, worker=worker)


def queued_job_ids(session: Session) -> list[uuid.UUID]:
    """The ids of every queued job, oldest first (what an executor sends at its start)."""
    return list(
        session.scalars(
            select(Job.id).where(Job.status == JobStatus.QUEUED).order_by(Job.created_at)
        )
    )


def expire_running_leases(session: Session) -> None:
    """End the lease of every running job now, so that the next :func:`reap` requeues them.

    For the embedded executor at its start: it is the only one per store, so a job still
    running was left by a process that died.
    """
    session.execute(update(Job).where(Job.status == JobStatus.RUNNING).values(lease_until=utcnow()))


def cancel_is_requested(session: Session, job_id: uuid.UUID) -> bool:
    """Whether someone asked ``job_id`` to stop (the watchdog's check on a silent job)."""
    return bool(session.scalar(select(Job.cancel_requested).where(Job.id == job_id)))


def cancel_if_requested(session: Session, job_id: uuid.UUID) -> None:
    """End a queued job ``cancelled`` if a cancel was requested for it (its claim's turn)."""
    res = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.QUEUED, Job.cancel_requested.is_(True))
        .values(status=JobStatus.CANCELLED, finished_at=utcnow(), updated_at=utcnow())
        .returning(Job.attempts)
    ).first()
    if res is not None:
        add_event(session, job_id, JobStatus.QUEUED, JobStatus.CANCELLED, res.attempts)


def _fenced(claim: Claim) -> ColumnElement[bool]:
    """Rows of this claim's attempt only: a worker whose lease moved on matches nothing."""
    return and_(
        Job.id == claim.job_id, Job.status == JobStatus.RUNNING, Job.attempts == claim.attempt
    )


def heartbeat(
    session: Session,
    claim: Claim,
    lease_s: float,
    *,
    iteration: int | None = None,
    eta_s: float | None = None,
    summary: dict[str, Any] | None = None,
) -> LeaseState:
    """Renew the lease and record progress.

    Returns:
        ``LeaseState.OK``, ``CANCEL`` (the job should stop), ``PREEMPT`` (the job should
        checkpoint and go back to the queue) or ``LOST`` (the lease was taken away: write
        nothing more).
    """
    values: dict[str, Any] = {"lease_until": utcnow() + timedelta(seconds=lease_s)}
    if iteration is not None:
        values.update(iteration=iteration, eta_s=eta_s, updated_at=utcnow())
    if summary is not None:
        values["summary"] = summary
    row = session.execute(
        update(Job)
        .where(_fenced(claim))
        .values(**values)
        .returning(Job.cancel_requested, Job.preempt_requested)
    ).first()
    if row is None:
        return LeaseState.LOST
    if row.cancel_requested:
        return LeaseState.CANCEL
    return LeaseState.PREEMPT if row.preempt_requested else LeaseState.OK


def check_end_status(status: str) -> None:
    """Refuse a status a run cannot end in (terminal, or ``queued`` for a requeue)."""
    if status not in TERMINAL and status != JobStatus.QUEUED:
        raise ValueError(f"status must be terminal or {JobStatus.QUEUED}, got {status!r}")


def finish_job(
    session: Session,
    claim: Claim,
    status: str,
    *,
    summary: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    iteration: int | None = None,
) -> bool:
    """End a running job held by ``claim``; ``False`` if the lease was lost meanwhile."""
    check_end_status(status)
    now = utcnow()
    values: dict[str, Any] = {"status": status, "updated_at": now, "lease_until": None}
    if status in TERMINAL:
        values.update(finished_at=now, eta_s=0.0 if status == JobStatus.SUCCEEDED else None)
    if summary is not None:
        values["summary"] = summary
    if error is not None:
        values["error"] = error
    if iteration is not None:
        values["iteration"] = iteration
    res = rows_changed(session, update(Job).where(_fenced(claim)).values(**values))
    if res != 1:
        return False
    add_event(session, claim.job_id, JobStatus.RUNNING, status, claim.attempt, **(error or {}))
    return True


def release_job(session: Session, claim: Claim) -> bool:
    """Put a running job back in the queue (preempted by the scheduler, or its worker stops).

    The attempt it used is given back (``max_attempts`` grows by one): a preemption is not
    a failure. It keeps its place: the queue orders by ``created_at``, which stays.
    ``False`` if the lease was lost meanwhile.
    """
    now = utcnow()
    res = rows_changed(
        session,
        update(Job)
        .where(_fenced(claim))
        .values(
            status=JobStatus.QUEUED,
            lease_until=None,
            worker=None,
            enqueued_at=now,
            updated_at=now,
            running_since=None,
            preempt_requested=False,
            max_attempts=Job.max_attempts + 1,
        ),
    )
    if res != 1:
        return False
    add_event(
        session,
        claim.job_id,
        JobStatus.RUNNING,
        JobStatus.QUEUED,
        claim.attempt,
        reason="preempted",
    )
    return True


def requeue_crashed(
    session: Session, claim: Claim, exitcode: int | None
) -> tuple[JobStatus, str] | None:
    """Give up the lease of a job whose process died under its worker (OOM kill, segfault).

    As the reaper does once the lease expired, but at once: the attempt counts, so the job
    goes back to the queue, or ends ``failed`` (``JobProcessCrashed``) when it was its last
    (a job that crashes its process every time does not loop). Fenced like
    :func:`finish_job`: nothing changes if this attempt no longer holds the lease.

    Returns:
        ``(new status, queue kind)``: ``queued`` (the caller commits first, then sends the
        job again, as the reaper's caller does) or ``failed``; ``None`` when the lease had
        moved on.
    """
    job = session.scalars(select(Job).where(_fenced(claim)).with_for_update()).first()
    if job is None:
        return None
    detail = (f"its process died (exit code {exitcode}) in attempt {job.attempts} "
              f"(max_attempts={job.max_attempts})")  # fmt: skip
    new = _lose_attempt(session, job, utcnow(), "job process crashed", "JobProcessCrashed",
                        detail)  # fmt: skip
    session.flush()
    return None if new is None else (new, job.queue)


def _lose_attempt(
    session: Session, job: Job, now: datetime, reason: str, error_type: str, detail: str
) -> JobStatus | None:
    """Requeue a running job whose attempt ended without it, or fail it after its last one.

    ``job`` is its row as read (locked) by the caller; the update is fenced by its attempt.

    Returns:
        The job's new status (``queued`` or ``failed``), or ``None`` if the attempt had
        moved on.
    """
    if job.attempts >= job.max_attempts:
        error: dict[str, Any] | None = {"type": error_type, "detail": detail}
        new = JobStatus.FAILED
    else:
        error, new = None, JobStatus.QUEUED
    # the points the lost attempt did not write are gone: a failed job's iteration is its
    # stored trace's last, a requeued one stands at its checkpoint (where it resumes)
    at = stored_iteration(session, job.id) if new == JobStatus.FAILED else None
    res = rows_changed(
        session,
        update(Job)
        .where(Job.id == job.id, Job.status == JobStatus.RUNNING, Job.attempts == job.attempts)
        .values(
            status=new,
            lease_until=None,
            worker=None,
            updated_at=now,
            enqueued_at=now,
            error=error,
            finished_at=now if new == JobStatus.FAILED else None,
            **({} if at is None else {"iteration": at}),
        ),
    )
    if res != 1:
        return None
    if new == JobStatus.QUEUED:
        rewind_trace(session, job.id)
    add_event(session, job.id, JobStatus.RUNNING, new, job.attempts, reason=reason)
    return new


def reap(
    session: Session,
    *,
    requeue_queued_after_s: float | None = None,
    stale_queues: Iterable[str] | None = None,
    expire_leases: bool = True,
) -> list[Job]:
    """Requeue running jobs whose lease expired (failing those out of attempts).

    With ``requeue_queued_after_s``, also return queued jobs enqueued longer ago than that,
    so that a message lost by the broker is sent again (a duplicate claims nothing);
    ``stale_queues`` limits that to the queue kinds whose broker queue is empty (a backlog
    is not a loss). ``expire_leases=False`` skips the expired leases (just after a store
    outage, when no heartbeat could renew them).

    Returns:
        The jobs to (re)enqueue; the caller commits first, then sends them.
    """
    now = utcnow()
    resend = []
    if requeue_queued_after_s is not None:
        stale = now - timedelta(seconds=requeue_queued_after_s)
        q = select(Job).where(Job.status == JobStatus.QUEUED, Job.enqueued_at < stale)
        if stale_queues is not None:
            q = q.where(Job.queue.in_(list(stale_queues)))
        for job in session.scalars(q):
            job.enqueued_at = now
            resend.append(job)
        # written before any counts row is held (migration 0023: job rows first): this
        # waits for a claim holding one of these rows, and that claim for its counts row
        session.flush()
    expired = (
        list(
            session.scalars(
                select(Job)
                .where(Job.status == JobStatus.RUNNING, Job.lease_until < now)
                # requeued in (queue, team) order: the order every writer takes the
                # counts rows in (migration 0023), so two reapers cannot deadlock
                .order_by(Job.queue, Job.team_id, Job.id)
                .with_for_update(skip_locked=True)
            )
        )
        if expire_leases
        else []
    )
    out = []
    for job in expired:
        detail = f"worker lost {job.attempts} times (max_attempts={job.max_attempts})"
        if _lose_attempt(session, job, now, "lease expired", "LeaseExpired", detail) == (
            JobStatus.QUEUED
        ):
            out.append(job)
    out += resend
    session.flush()
    return out
