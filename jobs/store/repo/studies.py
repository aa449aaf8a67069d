"""Studies: creating one with all its member jobs at once, reading, listing, cancelling.

A search study's members are added one by one (:func:`add_trial`) under the study row's
lock (:func:`lock_study`), by :func:`jobs.studies.search.advance.advance`.
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from jobs.specs.job import JobSpec
from jobs.status import JobStatus, TrialStatus
from jobs.store.models import Job, Study, StudyMember, TracePoint, utcnow
from jobs.store.repo.idempotency import find_keyed, insert_keyed, replayed, same_request
from jobs.store.repo.submissions import cancel_job, create_job
from jobs.studies.grid import Expansion

__all__ = [
    "active_searches",
    "add_trial",
    "cancel_study",
    "create_study",
    "get_study",
    "get_study_any",
    "list_studies",
    "lock_study",
    "member_traces",
    "study_members",
    "study_of_job",
    "study_status_counts",
    "warm_sources",
]


def create_study(
    session: Session,
    team_id: uuid.UUID,
    *,
    name: str,
    base: dict[str, Any],
    grid: dict[str, Any],
    group_by: list[str],
    expansion: Expansion,
    max_attempts: int = 3,
    idempotency_key: str | None = None,
    request_sha256: str | None = None,
    search: dict[str, Any] | None = None,
    warm_start: dict[str, Any] | None = None,
) -> tuple[Study, list[Job], bool]:
    """Insert the study and one queued job per member, in the caller's transaction.

    A search (``search`` given, ``expansion`` empty) starts with no member: the caller
    asks for its first ones (:func:`jobs.studies.search.advance.advance`) before committing;
    ``warm_start`` is its snapshot of earlier members (:mod:`jobs.studies.search.warm`).

    With an idempotency key already used, nothing is inserted: that study is returned, if
    the body's digest (``request_sha256``) is the stored one or else the normal forms agree.

    Returns:
        ``(study, jobs, created)``, the jobs in member order (none for a replay). The
        caller commits, then enqueues the jobs: a failure before the commit leaves neither
        the study nor any of its jobs.

    Raises:
        IdempotencyConflict: the key was used for a study of another name, base or grid.
    """

    def normal(study: Study) -> bool:
        return (study.name, study.base, study.grid, study.group_by, study.search) == (
            name, base, grid, group_by, search
        )  # fmt: skip

    same = same_request(request_sha256, normal)

    if idempotency_key is not None:
        existing = find_keyed(session, Study, team_id, idempotency_key)
        if existing is not None:
            return replayed(existing, same, "name, base, grid, group_by or search"), [], False
    study = Study(
        id=uuid.uuid4(),
        team_id=team_id,
        name=name,
        base=base,
        grid=grid,
        group_by=group_by,
        skipped=expansion.skipped,
        cancel_requested=False,
        created_at=utcnow(),
        idempotency_key=idempotency_key,
        request_sha256=request_sha256,
        kind="grid" if search is None else "search",
        search=search,
        search_done=search is None,
        warm_start=warm_start,
    )
    study, created = insert_keyed(session, study, same, "name, base, grid, group_by or search")
    if not created:
        return study, [], False
    jobs: dict[int, Job] = {}
    # inserted queue by queue (a grid may sweep the device): each insert takes its queue's
    # counts row (migration 0023), and two studies taking them in opposite orders would
    # deadlock; within a queue the member order is kept, which is the order they run in
    members = sorted(enumerate(expansion.members), key=lambda m: m[1].spec.queue_kind)
    for position, member in members:
        job, _ = create_job(session, team_id, member.spec, max_attempts=max_attempts)
        session.add(
            StudyMember(study_id=study.id, position=position, job_id=job.id, values=member.values)
        )
        jobs[position] = job
    session.flush()
    return study, [jobs[k] for k in sorted(jobs)], True


def get_study(session: Session, team_id: uuid.UUID, study_id: uuid.UUID) -> Study | None:
    """The team's study, or ``None`` when unknown or another team's."""
    study = session.get(Study, study_id, populate_existing=True)
    if study is None or study.team_id != team_id:
        return None
    return study


def list_studies(session: Session, team_id: uuid.UUID, *, limit: int = 50) -> list[Study]:
    """The team's studies, newest first."""
    q = (
        select(Study)
        .where(Study.team_id == team_id)
        .order_by(Study.created_at.desc(), Study.id.desc())
        .limit(limit)
    )
    return list(session.scalars(q))


def warm_sources(
    session: Session, team_id: uuid.UUID, study_ids: list[uuid.UUID], job_ids: list[uuid.UUID]
) -> tuple[list[Job], list[int], list[int]]:
    """The jobs a warm start reads: each study's members in order, then the jobs listed.

    Returns:
        ``(jobs, bad_studies, bad_jobs)``: the last two the indexes of ids that are unknown
        or another team's.
    """
    out: list[Job] = []
    bad_studies, bad_jobs = [], []
    for i, sid in enumerate(study_ids):
        study = get_study(session, team_id, sid)
        if study is None:
            bad_studies.append(i)
            continue
        out.extend(j for _, j in study_members(session, study.id))
    for i, jid in enumerate(job_ids):
        job = session.get(Job, jid)
        if job is None or job.team_id != team_id:
            bad_jobs.append(i)
            continue
        out.append(job)
    return out, bad_studies, bad_jobs


def study_members(session: Session, study_id: uuid.UUID) -> list[tuple[StudyMember, Job]]:
    """The study's members with their jobs, in grid order."""
    q = (
        select(StudyMember, Job)
        .join(Job, Job.id == StudyMember.job_id)
        .where(StudyMember.study_id == study_id)
        .order_by(StudyMember.position)
        .execution_options(populate_existing=True)
    )
    return [(m, j) for m, j in session.execute(q)]


def study_status_counts(
    session: Session, study_ids: list[uuid.UUID]
) -> dict[uuid.UUID, Counter[str]]:
    """Per study, how many members are in each status (one query for a listing)."""
    if not study_ids:
        return {}
    q = (
        select(StudyMember.study_id, Job.status, func.count())
        .join(Job, Job.id == StudyMember.job_id)
        .where(StudyMember.study_id.in_(study_ids))
        .group_by(StudyMember.study_id, Job.status)
    )
    out: dict[uuid.UUID, Counter[str]] = {sid: Counter() for sid in study_ids}
    for sid, status, n in session.execute(q):
        out[sid][status] = n
    return out


def cancel_study(session: Session, study: Study) -> list[Job]:
    """Mark the study cancelled and cancel every member still queued or running."""
    session.execute(update(Study).where(Study.id == study.id).values(cancel_requested=True))
    # every active member locked first: a cancel then takes its team's counts row (migration
    # 0023), and waiting for a member a claim holds while holding that row is a deadlock
    active = select(StudyMember.job_id).where(StudyMember.study_id == study.id)
    session.execute(
        select(Job.id)
        .where(Job.id.in_(active), Job.status.in_((JobStatus.QUEUED, JobStatus.RUNNING)))
        .order_by(Job.id)
        .with_for_update()
    )
    out = []
    for _, job in study_members(session, study.id):
        if job.status in (JobStatus.QUEUED, JobStatus.RUNNING):
            job = cancel_job(session, job)
        out.append(job)
    session.flush()
    return out


# -- search studies ---------------------------------------------------------------------------


def lock_study(session: Session, study_id: uuid.UUID) -> Study | None:
    """The study, its row locked until the transaction ends (``SELECT ... FOR UPDATE``).

    Whoever adds a search's members holds this lock, so two that finish members at once
    add one next member each, never the same trial twice.
    """
    q = select(Study).where(Study.id == study_id).with_for_update()
    return session.scalars(q.execution_options(populate_existing=True)).first()


def add_trial(
    session: Session,
    study: Study,
    number: int,
    spec: JobSpec,
    values: dict[str, Any],
    sampler_attrs: dict[str, Any],
    *,
    max_attempts: int = 3,
) -> Job:
    """Insert trial ``number`` of a search as a queued job (the study's row is locked).

    ``(study_id, position)`` is the members' primary key: a second insert of the same trial
    number fails rather than doubling it.
    """
    job, _ = create_job(session, study.team_id, spec, max_attempts=max_attempts)
    session.add(
        StudyMember(
            study_id=study.id,
            position=number,
            job_id=job.id,
            values=values,
            trial_state=TrialStatus.RUNNING,
            sampler_attrs=sampler_attrs,
        )
    )
    session.flush()
    return job


def get_study_any(session: Session, study_id: uuid.UUID) -> Study | None:
    """A study of any team (the worker's view), or ``None``."""
    return session.get(Study, study_id, populate_existing=True)


def study_of_job(session: Session, job_id: uuid.UUID) -> Study | None:
    """The search study ``job_id`` is a member of, or ``None``."""
    q = (
        select(Study)
        .join(StudyMember, StudyMember.study_id == Study.id)
        .where(StudyMember.job_id == job_id, Study.kind == "search")
    )
    return session.scalars(q).first()


def active_searches(session: Session) -> list[uuid.UUID]:
    """The search studies that may still add members (their budget not yet spent)."""
    q = select(Study.id).where(Study.kind == "search", Study.search_done.is_(False))
    return list(session.scalars(q.order_by(Study.created_at)))


def member_traces(
    session: Session, job_ids: list[uuid.UUID], fields: list[str]
) -> dict[uuid.UUID, dict[int, list[float]]]:
    """Per job, iteration -> the values of ``fields`` at it (rows with a ``None`` skipped)."""
    if not job_ids:
        return {}
    cols = [getattr(TracePoint, f) for f in fields]
    q = (
        select(TracePoint.job_id, TracePoint.iteration, *cols)
        .where(TracePoint.job_id.in_(job_ids))
        .order_by(TracePoint.job_id, TracePoint.iteration)
    )
    out: dict[uuid.UUID, dict[int, list[float]]] = {j: {} for j in job_ids}
    for job_id, iteration, *vals in session.execute(q):
        if all(v is not None for v in vals):
            out[job_id][iteration] = [float(v) for v in vals]
    return out
