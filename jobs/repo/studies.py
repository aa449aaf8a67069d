"""Studies: creating one with all its member jobs at once, reading, listing, cancelling."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from jobs.models import Job, Study, StudyMember, utcnow
from jobs.repo.idempotency import find_keyed, insert_keyed, replayed
from jobs.repo.submissions import cancel_job, create_job
from jobs.status import JobStatus
from jobs.studies.grid import Expansion

__all__ = [
    "cancel_study",
    "create_study",
    "get_study",
    "list_studies",
    "study_members",
    "study_status_counts",
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
) -> tuple[Study, list[Job], bool]:
    """Insert the study and one queued job per member, in the caller's transaction.

    With an idempotency key already used, nothing is inserted: that study is returned.

    Returns:
        ``(study, jobs, created)``, the jobs in member order (none for a replay). The
        caller commits, then enqueues the jobs: a failure before the commit leaves neither
        the study nor any of its jobs.

    Raises:
        IdempotencyConflict: the key was used for a study of another name, base or grid.
    """

    def same(study: Study) -> bool:
        return (study.name, study.base, study.grid, study.group_by) == (
            name, base, grid, group_by
        )  # fmt: skip

    if idempotency_key is not None:
        existing = find_keyed(session, Study, team_id, idempotency_key)
        if existing is not None:
            return replayed(existing, same, "name, base, grid or group_by"), [], False
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
    )
    study, created = insert_keyed(session, study, same, "name, base, grid or group_by")
    if not created:
        return study, [], False
    jobs = []
    for position, member in enumerate(expansion.members):
        job, _ = create_job(session, team_id, member.spec, max_attempts=max_attempts)
        session.add(
            StudyMember(study_id=study.id, position=position, job_id=job.id, values=member.values)
        )
        jobs.append(job)
    session.flush()
    return study, jobs, True


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
    out = []
    for _, job in study_members(session, study.id):
        if job.status in (JobStatus.QUEUED, JobStatus.RUNNING):
            job = cancel_job(session, job)
        out.append(job)
    session.flush()
    return out
