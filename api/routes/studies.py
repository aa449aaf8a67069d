"""``/v1/studies``: a grid or a search of jobs as one object; create, list, read, cancel."""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from sqlalchemy.orm import Session

from api.auditor import AuditDep, Auditor
from api.deps import DispatcherDep, SessionDep, SettingsDep, TeamDep
from api.errors import ProblemError
from api.idempotency import CONFLICT_DOC, IdempotencyKey, RequestDigest, conflict, mark_replayed
from api.openapi import auth_responses, links_to, problem_doc
from api.params import Digits
from api.quota import check_quota
from api.schemas.studies import (
    ImportancePublic,
    StudiesPublic,
    StudyCreate,
    StudyMemberPublic,
    StudyPublic,
)
from api.settings import ApiSettings
from jobs.specs.admission import admit
from jobs.specs.job import JobSpec
from jobs.store import repo
from jobs.store.models import Study
from jobs.studies.grid import Expansion, GridError, expand, replicate_paths
from jobs.studies.search.advance import advance, trials_of
from jobs.studies.search.checks import check_search
from jobs.studies.search.importance import importance
from jobs.studies.search.space import SearchSpec
from jobs.studies.search.trials import best_trials
from jobs.studies.search.warm import snapshot
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


def _admit_for(
    settings: ApiSettings, session: Session, team_id: uuid.UUID
) -> Callable[[dict[str, Any]], JobSpec]:
    datasets = repo.dataset_lookup(session, team_id)
    return lambda data: admit(data, limits=settings.budget, datasets=datasets)


def _expand(
    body: StudyCreate, settings: ApiSettings, session: Session, team_id: uuid.UUID
) -> tuple[Expansion, list[str]]:
    admitted = _admit_for(settings, session, team_id)  # every member as POST /v1/jobs does
    if (body.grid is None) == (body.search is None):
        msg = "give exactly one of grid (every combination) and search (a sampler's trials)"
        raise _invalid([{"field": "grid", "loc": ["grid"], "message": msg,
                         "type": "value_error"}])  # fmt: skip
    try:
        if body.search is not None:
            check_search(body.search, body.base, name=body.name,
                         max_members=settings.max_study_members, admit=admitted)  # fmt: skip
            expansion = Expansion(members=[])
        else:
            expansion = expand(body.base, body.grid or {}, name=body.name, admit=admitted,
                               max_members=settings.max_study_members)  # fmt: skip
    except GridError as exc:
        extra = {} if exc.limit is None else {"limit": exc.limit}
        raise _invalid(exc.errors, **extra) from None
    swept = list(body.grid or (body.search.params if body.search else {}))
    group_by = body.group_by
    if group_by is None:
        reps = set(replicate_paths(swept))
        group_by = [] if body.search else [p for p in swept if p not in reps]
    bad = [p for p in group_by if p not in swept]
    if bad:
        msg = f"group_by names paths the study does not sweep: {bad}; swept: {swept}"
        raise _invalid([{"field": "group_by", "loc": ["group_by"], "message": msg,
                         "type": "value_error"}])  # fmt: skip
    return expansion, group_by


def _warm(session: Session, team_id: uuid.UUID, search: SearchSpec) -> dict[str, Any] | None:
    """The warm start's snapshot; 422 naming each study or job id that is not the team's."""
    if search.warm_start is None:
        return None
    w = search.warm_start
    jobs, bad_studies, bad_jobs = repo.warm_sources(session, team_id, w.studies, w.jobs)
    errors = [
        {"field": f"search.warm_start.{kind}.{i}", "loc": ["search", "warm_start", kind, i],
         "message": f"no {kind[:-1]} {ids[i]} for this team", "type": "not_found"}
        for kind, ids, bad in (("studies", w.studies, bad_studies), ("jobs", w.jobs, bad_jobs))
        for i in bad
    ]  # fmt: skip
    if errors:
        raise _invalid(errors)
    return snapshot(search, jobs)


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
    best, weights = None, None
    if study.search is not None:
        search = SearchSpec.model_validate(study.search)
        trials = trials_of(study, rows)
        best = [t.number for t in best_trials(trials, search.directions)]
        found = importance(search, trials)
        weights = None if found is None else ImportancePublic.model_validate(found)
    return StudyPublic.of(study, counts, members, table, best, weights)


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
    digest: RequestDigest,
    idempotency_key: IdempotencyKey = None,
) -> StudyPublic:
    """Create a study: a grid's every combination, or a search's first trials, all or none."""
    expansion, group_by = _expand(body, settings, session, team.id)
    replay = idempotency_key is not None and repo.find_keyed(
        session, Study, team.id, idempotency_key
    )
    search = body.search
    if search is not None and search.n_trials is None:  # a budget alone: at most the limit
        search = search.model_copy(update={"n_trials": settings.max_study_members})
    warm = None if search is None or replay else _warm(session, team.id, search)
    if not replay:  # a replay creates nothing, so it is never over quota
        first = min(search.max_concurrent, search.n_trials or search.max_concurrent) if (
            search) else len(expansion.members)  # fmt: skip
        check_quota(session, team.id, settings, study=first)
    try:
        study, jobs, created = repo.create_study(
            session, team.id, name=body.name, base=body.base, grid=body.grid or {},
            group_by=group_by, expansion=expansion, max_attempts=settings.max_attempts,
            idempotency_key=idempotency_key, request_sha256=digest,
            search=None if search is None else search.model_dump(mode="json"), warm_start=warm,
        )  # fmt: skip
        if created and search is not None:
            jobs = advance(session, study.id, admit=_admit_for(settings, session, team.id),
                           max_attempts=settings.max_attempts)  # fmt: skip
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
    limit: Annotated[int, Query(ge=1, le=200, description="page size"), Digits] = 50,
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
