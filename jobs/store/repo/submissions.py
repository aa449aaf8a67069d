"""Submitting, reading, listing and cancelling jobs: the API's side of the lifecycle."""

from __future__ import annotations

import json
import uuid
from typing import Any

from pydantic import ValidationError
from sqlalchemy import (
    Row,
    Text,
    bindparam,
    cast,
    select,
    update,
)
from sqlalchemy.orm import Session

from jobs.fairshare import Priority
from jobs.kinds.registry import source_of
from jobs.specs.job import JobSpec
from jobs.status import JobStatus
from jobs.store.models import (
    Job,
    utcnow,
)
from jobs.store.repo.events import add_event
from jobs.store.repo.idempotency import find_keyed, insert_keyed, replayed, same_request
from jobs.store.repo.pages import encode_cursor, page_after
from jobs.store.repo.rows import rows_changed


def create_job(
    session: Session,
    team_id: uuid.UUID,
    spec: JobSpec,
    *,
    idempotency_key: str | None = None,
    request_sha256: str | None = None,
    max_attempts: int = 3,
) -> tuple[Job, bool]:
    """Insert a queued job; with an idempotency key already used, return that job instead.

    The retry is that job's request when its body's digest (``request_sha256``, of
    :func:`~jobs.store.repo.idempotency.request_digest`) is the stored one, or else when the
    stored spec, read by this release, is this spec: a row of a release that stored no
    digest gains the fields added since with their defaults.

    Returns:
        ``(job, created)``. The caller commits, then enqueues when ``created``.

    Raises:
        IdempotencyConflict: the key was used with a different spec.
    """
    data = spec.model_dump(mode="json")

    def normal(job: Job) -> bool:
        return job.spec == data or _read_now(job.spec) == data

    same = same_request(request_sha256, normal)

    if idempotency_key is not None:
        existing = find_keyed(session, Job, team_id, idempotency_key)
        if existing is not None:
            return replayed(existing, same, "spec"), False
    now = utcnow()
    job = Job(
        id=uuid.uuid4(),
        team_id=team_id,
        name=spec.name,
        spec=data,
        queue=spec.queue_kind,
        status=JobStatus.QUEUED,
        idempotency_key=idempotency_key,
        request_sha256=request_sha256,
        max_attempts=max_attempts,
        iterations=spec.outer.iterations,
        priority=Priority.of(spec.priority),
        plugin=source_of(spec.problem.kind),
        created_at=now,
        enqueued_at=now,
        updated_at=now,
    )
    job, created = insert_keyed(session, job, same, "spec")
    if created:
        add_event(session, job.id, None, JobStatus.QUEUED, 0)
    return job, created


def _read_now(stored: dict[str, Any]) -> dict[str, Any] | None:
    """A stored spec in this release's normal form; ``None`` if this release refuses it."""
    try:
        return JobSpec.model_validate(stored).model_dump(mode="json")
    except ValidationError:
        return None


def get_job(session: Session, team_id: uuid.UUID | None, job_id: uuid.UUID) -> Job | None:
    """The job, or ``None`` when unknown or (with ``team_id``) another team's."""
    job = session.get(Job, job_id, populate_existing=True)
    if job is None or (team_id is not None and job.team_id != team_id):
        return None
    return job


# what a job's public view (api.schemas.jobs.JobPublic) is made of, and its team; the JSON
# columns as the store's text, so that equal rows are equal representations (1 and 1.0 are
# equal numbers but not equal texts) and a poll that finds its job unchanged parses nothing
_VIEW_JSON = ("spec", "plugin", "summary", "error")
_VIEW_COLUMNS = ("team_id", "id", "name", "status", "queue", "iteration", "iterations",
                 "eta_s", "attempts", "cancel_requested", "created_at", "started_at",
                 "finished_at", "updated_at")  # fmt: skip
# one statement object with a bound id: SQLAlchemy keeps its cache key, and no comparison
# expression is built per poll
_VIEW = select(
    *(getattr(Job, c) for c in _VIEW_COLUMNS),
    *(cast(getattr(Job, c), Text).label(c) for c in _VIEW_JSON),
).where(Job.id == bindparam("job_id", type_=Job.id.type))


def job_view_row(session: Session, job_id: uuid.UUID) -> Row[Any] | None:
    """The columns of the job's public view in one Core row, or ``None`` for no such job.

    No ORM object is built: a dashboard polls each job about twice a second and most polls
    find it unchanged. The JSON columns (``spec``, ``plugin``, ``summary``, ``error``) are
    their stored text; :func:`job_of_view_row` makes the job from the row.
    """
    # the session's connection runs it as Core: the ORM's execution layer costs as much CPU
    # again, for a statement that loads no entity
    return session.connection().execute(_VIEW, {"job_id": job_id}).first()


def job_of_view_row(row: Row[Any]) -> Job:
    """A transient job (in no session) holding :func:`job_view_row`'s columns, JSON parsed."""
    values = row._asdict()
    for name in _VIEW_JSON:
        values[name] = json.loads(values[name]) if values[name] is not None else None
    return Job(**values)


def list_jobs(
    session: Session,
    team_id: uuid.UUID,
    *,
    status: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[Job], str | None]:
    """A page of the team's jobs, newest first, and the cursor of the next page (or None)."""
    q = select(Job).where(Job.team_id == team_id)
    if status is not None:
        q = q.where(Job.status == status)
    rows = list(session.scalars(page_after(q, Job, cursor, limit)))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (encode_cursor(rows[-1]) if more and rows else None)


def cancel_job(session: Session, job: Job) -> Job:
    """Cancel a queued job at once; ask a running one to stop (the worker ends it)."""
    if job.status == JobStatus.QUEUED:
        res = rows_changed(
            session,
            update(Job)
            .where(Job.id == job.id, Job.status == JobStatus.QUEUED)
            .values(status=JobStatus.CANCELLED, finished_at=utcnow(), updated_at=utcnow()),
        )
        if res == 1:
            add_event(session, job.id, JobStatus.QUEUED, JobStatus.CANCELLED, job.attempts)
            session.flush()
            return get_job(session, None, job.id) or job
    session.execute(
        update(Job)
        .where(Job.id == job.id, Job.status.in_((JobStatus.QUEUED, JobStatus.RUNNING)))
        .values(cancel_requested=True, updated_at=utcnow())
    )
    session.flush()
    return get_job(session, None, job.id) or job


def find_idempotent(session: Session, team_id: uuid.UUID, idempotency_key: str) -> Job | None:
    """The team's job submitted with ``idempotency_key``, if any (a replay, not a new job)."""
    return find_keyed(session, Job, team_id, idempotency_key)
