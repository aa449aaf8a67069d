"""``/v1/studies``: a grid of jobs as one object; create, list, read (with its table), cancel."""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from sqlalchemy.orm import Session

from api.auditor import AuditDep, Auditor
from api.deps import DispatcherDep, SessionDep, SettingsDep, TeamDep
from api.errors import ProblemError
from api.idempotency import CONFLICT_DOC, IdempotencyKey, conflict, mark_replayed
from api.openapi import auth_responses, links_to, problem_doc
from api.quota import check_quota
from api.schemas.studies import StudiesPublic, StudyCreate, StudyMemberPublic, StudyPublic
from api.settings import ApiSettings
from jobs import repo
from jobs.models import Study
from jobs.specs.admission import admit
from jobs.specs.job import JobSpec
from jobs.studies.grid import Expansion, GridError, expand, replicate_paths
from jobs.studies.table import aggregate

router = APIRouter(
    prefix="/v1/studies",
    tags=["studies"],
    responses={
        **auth_responses(quota=True),
        404: problem_doc("no such study for this team"),
        422: problem_doc("invalid grid or base spec, each problem named in `errors`"),
    },
)
log = logging.getLogger(__name__)


def _invalid(errors: list[dict[str, Any]], **extra: Any) -> ProblemError:
    fields = ", ".join(dict.fromkeys(e["field"] for e in errors))
    return ProblemError(
        422,
        f"{len(errors)} problem(s) with the study: {fields}: {errors[0]['message']}",
        slug="validation-error",
        title="Invalid study",
        errors=errors,
        **extra,
    )


def _expand(
    body: StudyCreate, settings: ApiSettings, session: Session, team_id: uuid.UUID
) -> tuple[Expansion, list[str]]:
    datasets = repo.dataset_lookup(session, team_id)

    def admitted(data: dict[str, Any]) -> JobSpec:  # every member as POST /v1/jobs admits it
        return admit(data, limits=settings.budget, datasets=datasets)

    try:
        expansion = expand(body.base, body.grid, max_members=settings.max_study_members,
                           name=body.name, admit=admitted)  # fmt: skip
    except GridError as exc:
        extra = {} if exc.limit is None else {"limit": exc.limit}
        raise _invalid(exc.errors, **extra) from None
    swept = list(body.grid)
    group_by = body.group_by
    if group_by is None:
        reps = set(replicate_paths(swept))
        group_by = [p for p in swept if p not in reps]
    bad = [p for p in group_by if p not in swept]
    if bad:
        msg = f"group_by names paths the grid does not sweep: {bad}; swept: {swept}"
        raise _invalid([{"field": "group_by", "loc": ["group_by"], "message": msg,
                         "type": "value_error"}])  # fmt: skip
    return expansion, group_by


def _study_or_404(audit: Auditor, study_id: uuid.UUID) -> Study:
    study = repo.get_study(audit.session, audit.principal.team.id, study_id)
    if study is None:
        raise audit.not_found("study", Study.id, study_id)
    return study


def _detail(session: Session, study: Study) -> StudyPublic:
    rows = repo.study_members(session, study.id)
    members = [StudyMemberPublic.of(m, j) for m, j in rows]
    counts = Counter(str(j.status) for _, j in rows)
    table = aggregate(
        [{"values": m.values, "status": m.status, "summary": m.summary} for m in members],
        study.group_by,
    )
    return StudyPublic.of(study, counts, members, table)


@router.post(
    "",
    status_code=201,
    response_model=StudyPublic,
    responses={201: {"links": links_to("/v1/studies/{study_id}", "study_id", "id",
                                       {"GetStudy": ("", "get"),
                                        "CancelStudy": ("/cancel", "post")})},
               409: CONFLICT_DOC},
)  # fmt: skip
def create_study(
    body: StudyCreate,
    session: SessionDep,
    team: TeamDep,
    dispatcher: DispatcherDep,
    settings: SettingsDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> StudyPublic:
    """Create a study: every combination of the grid becomes a queued job, all or none."""
    expansion, group_by = _expand(body, settings, session, team.id)
    replay = idempotency_key is not None and repo.find_keyed(
        session, Study, team.id, idempotency_key
    )
    if not replay:  # a replay creates nothing, so it is never over quota
        check_quota(session, team.id, settings, study=len(expansion.members))
    try:
        study, jobs, created = repo.create_study(
            session, team.id, name=body.name, base=body.base, grid=body.grid,
            group_by=group_by, expansion=expansion, max_attempts=settings.max_attempts,
            idempotency_key=idempotency_key,
        )  # fmt: skip
    except repo.IdempotencyConflict as exc:
        raise conflict(exc) from None
    session.commit()
    if not created:
        mark_replayed(response)
    for job in jobs:
        try:
            dispatcher.send(job.id, job.queue)
        except Exception:  # the reaper sends queued jobs again; the study still stands
            log.warning("could not enqueue job %s; the reaper will", job.id, exc_info=True)
    response.headers["Location"] = f"/v1/studies/{study.id}"
    return _detail(session, study)


@router.get("", response_model=StudiesPublic)
def list_studies(
    session: SessionDep,
    team: TeamDep,
    limit: Annotated[int, Query(ge=1, le=200, description="page size")] = 50,
) -> StudiesPublic:
    """List the team's studies, newest first, with their status and progress."""
    studies = repo.list_studies(session, team.id, limit=limit)
    counts = repo.study_status_counts(session, [s.id for s in studies])
    data = [StudyPublic.of(s, counts[s.id]) for s in studies]
    return StudiesPublic(data=data, count=len(data))


@router.get("/{study_id}", response_model=StudyPublic)
def get_study(study_id: uuid.UUID, session: SessionDep, audit: AuditDep) -> StudyPublic:
    """One study: members with status and summary, and the aggregate table."""
    return _detail(session, _study_or_404(audit, study_id))


@router.post("/{study_id}/cancel", status_code=202, response_model=StudyPublic)
def cancel_study(study_id: uuid.UUID, session: SessionDep, audit: AuditDep) -> StudyPublic:
    """Cancel every member still queued, and ask every running one to stop."""
    study = _study_or_404(audit, study_id)
    repo.cancel_study(session, study)
    session.commit()
    return _detail(session, _study_or_404(audit, study_id))
