"""``/v1/jobs``: submit, list, read, trace, result, hyperparameters, cancel."""

from __future__ import annotations

import logging
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy.orm import Session

from api.auditor import AuditDep, Auditor
from api.deps import DispatcherDep, PrincipalDep, SessionDep, SettingsDep, TeamDep, open_session
from api.errors import ProblemError
from api.idempotency import CONFLICT_DOC, IdempotencyKey, RequestDigest, conflict, mark_replayed
from api.jobviews import weak_etag
from api.openapi import NPZ, auth_responses, file_doc, file_media_type, links_to, problem_doc
from api.params import Digits
from api.quota import check_quota
from api.schemas.jobs import JobPublic, JobResult, JobsPublic, TracePublic
from api.settings import ApiSettings
from jobs.specs.admission import admit
from jobs.specs.job import JobSpec
from jobs.status import JobStatus
from jobs.store import repo
from jobs.store.models import TRACE_FIELDS, Job
from jobs.store.repo.pages import CURSOR_DESCRIPTION, CURSOR_PATTERN

# OpenAPI links from a response's job `id` to the job's routes (followed by stateful tests)
_JOB_LINKS = links_to("/v1/jobs/{job_id}", "job_id", "id", {
    "GetJob": ("", "get"),
    "GetTrace": ("/trace", "get"),
    "GetResult": ("/result", "get"),
    "GetHparams": ("/hparams", "get"),
    "CancelJob": ("/cancel", "post"),
})  # fmt: skip
# a conditional GET answered from the client's copy: no body, the same ETag
_NOT_MODIFIED: dict[str, Any] = {
    "description": "unchanged since the ETag in If-None-Match",
    "headers": {"ETag": {"description": "the representation's tag", "schema": {"type": "string"}}},
}

router = APIRouter(
    prefix="/v1/jobs",
    tags=["jobs"],
    responses={
        **auth_responses(quota=True),
        404: problem_doc("no such job for this team"),
        422: problem_doc("invalid field(s), each named in `errors`"),
    },
)
log = logging.getLogger(__name__)


def _job_or_404(audit: Auditor, job_id: uuid.UUID) -> Job:
    job = repo.get_job(audit.session, audit.principal.team.id, job_id)
    if job is None:
        raise audit.not_found("job", Job.id, job_id)
    return job


@router.post(
    "",
    status_code=201,
    response_model=JobPublic,
    responses={
        201: {"links": _JOB_LINKS},
        409: CONFLICT_DOC,
        413: problem_doc("request body over the limit (max_body_bytes)"),
    },
)
def submit_job(
    spec: JobSpec,
    session: SessionDep,
    team: TeamDep,
    dispatcher: DispatcherDep,
    settings: SettingsDep,
    response: Response,
    digest: RequestDigest,
    idempotency_key: IdempotencyKey = None,
) -> JobPublic:
    """Submit a job; it starts `queued`."""
    # 422 naming each bad field: cross-field rules, the team's data set and its fit, budget
    admit(spec, limits=settings.budget, datasets=repo.dataset_lookup(session, team.id))
    replay = idempotency_key is not None and repo.find_idempotent(session, team.id, idempotency_key)
    if not replay:  # a replay creates nothing, so it is never over quota
        check_quota(session, team.id, settings)
    try:
        job, created = repo.create_job(
            session,
            team.id,
            spec,
            idempotency_key=idempotency_key,
            request_sha256=digest,
            max_attempts=settings.max_attempts,
        )
    except repo.IdempotencyConflict as exc:
        raise conflict(exc) from None
    session.commit()
    if created:
        try:
            dispatcher.send(job.id, job.queue)
        except Exception:  # the reaper sends queued jobs again; the submit still stands
            log.warning("could not enqueue job %s; the reaper will", job.id, exc_info=True)
    else:
        mark_replayed(response)
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return JobPublic.of(job)


@router.get("", response_model=JobsPublic)
def list_jobs(
    session: SessionDep,
    team: TeamDep,
    status: Annotated[JobStatus | None, Query(description="only jobs in this status")] = None,
    limit: Annotated[int, Query(ge=1, le=200, description="page size"), Digits] = 50,
    cursor: Annotated[
        str | None, Query(pattern=CURSOR_PATTERN, description=CURSOR_DESCRIPTION)
    ] = None,
) -> JobsPublic:
    """List the team's jobs, newest first."""
    rows, next_cursor = repo.list_jobs(session, team.id, status=status, limit=limit, cursor=cursor)
    return JobsPublic(
        data=[JobPublic.of(j) for j in rows], count=len(rows), next_cursor=next_cursor
    )


def _not_modified(request: Request, etag: str) -> bool:
    """``If-None-Match`` names ``etag`` (weak comparison, RFC 9110 13.1.2) or is ``*``."""
    header = request.headers.get("if-none-match")
    if not header:
        return False
    tags = {t.strip().removeprefix("W/") for t in header.split(",")}
    return "*" in tags or etag.removeprefix("W/") in tags


@router.get(
    "/{job_id}",
    response_model=JobPublic,
    responses={200: {"links": _JOB_LINKS}, 304: _NOT_MODIFIED},
)
def get_job(job_id: uuid.UUID, request: Request, principal: PrincipalDep) -> Response:
    """One job: status, progress, summary, error."""
    with open_session(request)[0] as session:  # polled: not a dependency (api.deps)
        row = repo.job_view_row(session, job_id)
        if row is None or row.team_id != principal.team.id:
            raise Auditor(session, principal, request).not_found("job", Job.id, job_id)
    # the tag hashes the representation itself: a heartbeat that changes only the summary
    # (no updated_at) still changes it; made once per version of the row (api.jobviews)
    etag, body = request.app.state.job_views.view(row)
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if _not_modified(request, etag):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


# the schema names the known columns, so a schema-valid `fields` is always accepted
_FIELDS_PATTERN = r"^[\s,]*(?:(?:{})(?:\s*,[\s,]*|\s*$))*$".format(
    "|".join(("iteration", *TRACE_FIELDS))
)


def _fields(fields: str | None) -> list[str]:
    if not fields:
        return list(TRACE_FIELDS)
    names = [f.strip() for f in fields.split(",") if f.strip()]
    bad = [f for f in names if f not in TRACE_FIELDS and f != "iteration"]
    if bad:
        msg = f"unknown trace field(s) {bad}; known: {', '.join(TRACE_FIELDS)}"
        raise ProblemError(
            422,
            msg,
            slug="validation-error",
            title="Invalid request",
            errors=[{"field": "query.fields", "loc": ["query", "fields"], "message": msg,
                     "type": "value_error"}],
        )  # fmt: skip
    return [f for f in names if f != "iteration"]


@router.get(
    "/{job_id}/trace",
    response_model=TracePublic,
    response_model_exclude_none=True,
    responses={304: _NOT_MODIFIED},
)
def get_trace(
    job_id: uuid.UUID,
    request: Request,
    principal: PrincipalDep,
    after: Annotated[
        int, Query(ge=0, le=10_000_000, description="only iterations after this one"), Digits
    ] = 0,
    max_points: Annotated[
        int | None,
        Query(ge=2, description="downsample to at most this many points, keeping extremes"),
        Digits,
    ] = None,
    fields: Annotated[
        str | None,
        Query(
            max_length=200,
            # documented only: `_fields` answers a mismatch naming the unknown columns
            json_schema_extra={"pattern": _FIELDS_PATTERN},
            description="comma-separated columns; all when omitted",
        ),
    ] = None,
) -> Response:
    """Convergence trace as columns, after an iteration, downsampled keeping extremes.

    ``X-Trace-Resolution: block`` says the job's full-resolution points were compacted
    (``BILEVEL_TRACE_RETENTION_DAYS``): the rows are the iterations where each field's
    minimum and maximum over a block of 64 lie, with ``null`` for the other fields.
    """
    with open_session(request)[0] as session:  # polled: not a dependency (api.deps)
        return _trace(request, session, principal, job_id, after, max_points, fields)


def _trace(
    request: Request,
    session: Session,
    principal: repo.Principal,
    job_id: uuid.UUID,
    after: int,
    max_points: int | None,
    fields: str | None,
) -> Response:
    # the job's team and attempt with the trace's span, in one statement
    poll = repo.trace_poll(session, job_id, after)
    if poll is None or poll.team_id != principal.team.id:
        raise Auditor(session, principal, request).not_found("job", Job.id, job_id)
    names = _fields(fields)
    settings: ApiSettings = request.app.state.settings  # not a dependency: one less per poll
    limit = min(max_points or settings.default_trace_points, settings.max_trace_points)
    span = poll.span
    count, last = span.points, span.last
    # a compacted trace (past the retention) is answered from its per-block rollups
    resolution = "block" if span.compacted else "full"
    tag_src = (f"{job_id}:{poll.attempts}:{count}:{last}:{after}:{limit}:{','.join(names)}"
               f":{resolution}")  # fmt: skip
    etag = weak_etag(tag_src.encode())
    headers = {"ETag": etag, "Cache-Control": "no-cache", "X-Trace-Points": str(count),
               "X-Trace-Resolution": resolution}  # fmt: skip
    if _not_modified(request, etag):
        return Response(status_code=304, headers=headers)
    # the body holds what the ETag counted, read without a second span query; on
    # PostgreSQL the database writes the JSON (repo.trace_json: no point decoded here)
    body = repo.trace_json(session, job_id, after=after, max_points=limit, fields=names,
                           span=span)  # fmt: skip
    return Response(body, media_type="application/json", headers=headers)


@router.get(
    "/{job_id}/result",
    response_model=JobResult,
    responses={409: problem_doc("the job has not succeeded")},
)
def get_result(job_id: uuid.UUID, session: SessionDep, audit: AuditDep) -> JobResult:
    """Final metrics of a succeeded job."""
    job = _job_or_404(audit, job_id)
    if job.status != JobStatus.SUCCEEDED:
        raise ProblemError(409, f"job {job_id} is {job.status}, not succeeded", slug="not-ready")
    s = job.summary or {}
    return JobResult(
        id=job.id,
        status=job.status,
        iterations=job.iteration,
        final_outer_loss=s.get("final_outer_loss"),
        best_outer_loss=s.get("best_outer_loss"),
        best_iteration=s.get("best_iteration"),
        metrics=s.get("metrics", {}),
        hparams=s.get("hparams"),
    )


@router.get(
    "/{job_id}/hparams",
    response_class=Response,
    responses={
        200: file_doc(NPZ, "an .npz file: `numpy.load` reads it"),
        409: problem_doc("the job has not succeeded"),
    },
)
def get_hparams(
    job_id: uuid.UUID, request: Request, session: SessionDep, audit: AuditDep
) -> Response:
    """Learned hyperparameters as an .npz file (numpy.load reads it)."""
    job = _job_or_404(audit, job_id)
    art = repo.load_artifact(session, job.id, "hparams")
    if job.status != JobStatus.SUCCEEDED or art is None:
        raise ProblemError(409, f"job {job_id} is {job.status}: no hparams yet", slug="not-ready")
    return Response(
        art.data,
        # the documented type, the worker's (worker.runner), or raw bytes to who asks for them
        media_type=file_media_type(request.headers.get("accept"), NPZ),
        headers={"Content-Disposition": f'attachment; filename="{job.id}-hparams.npz"'},
    )


@router.post(
    "/{job_id}/cancel",
    status_code=202,
    response_model=JobPublic,
    responses={
        202: {"links": _JOB_LINKS},
        409: problem_doc("the job already succeeded or failed"),
    },
)
def cancel_job(job_id: uuid.UUID, session: SessionDep, audit: AuditDep) -> JobPublic:
    """Cancel a queued job, or ask a running one to stop."""
    job = _job_or_404(audit, job_id)
    if job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED):
        raise ProblemError(409, f"job {job_id} already {job.status}", slug="already-finished")
    job = repo.cancel_job(session, job)
    session.commit()
    return JobPublic.of(job)
