"""``/v1/jobs/{job_id}/search-around``: a search study around one job's settings."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response

from api.auditor import AuditDep
from api.deps import DispatcherDep, SettingsDep, TeamDep
from api.idempotency import CONFLICT_DOC, IdempotencyKey, RequestDigest
from api.openapi import auth_responses, links_to, problem_doc
from api.routes.studies import create_study
from api.schemas.studies import AroundCreate, StudyCreate, StudyPublic
from jobs.store import repo
from jobs.store.models import Job
from jobs.studies.search.around import around

router = APIRouter(
    prefix="/v1/jobs",
    tags=["studies"],
    responses={
        **auth_responses(quota=True),
        404: problem_doc("no such job for this team"),
        422: problem_doc("a search the job's spec cannot make, each problem named in `errors`"),
    },
)


@router.post(
    "/{job_id}/search-around",
    status_code=201,
    response_model=StudyPublic,
    responses={201: {"links": links_to("/v1/studies/{study_id}", "study_id", "id",
                                       {"GetStudy": ("", "get")})},
               409: CONFLICT_DOC},
)  # fmt: skip
def search_around(
    job_id: uuid.UUID,
    body: AroundCreate,
    audit: AuditDep,
    team: TeamDep,
    dispatcher: DispatcherDep,
    settings: SettingsDep,
    response: Response,
    digest: RequestDigest,
    idempotency_key: IdempotencyKey = None,
) -> StudyPublic:
    """Create a search study around a job: its outer lr (log, /3..x3), K and inner steps."""
    job = repo.get_job(audit.session, team.id, job_id)
    if job is None:
        raise audit.not_found("job", Job.id, job_id)
    name = body.name or f"around {job.name}"[:200]
    study = around(job.spec, job.id, name=name, n_trials=body.n_trials,
                   max_concurrent=body.max_concurrent, sampler=body.sampler,
                   pruner=None if body.pruner is None else body.pruner.model_dump(),
                   seed=body.seed)  # fmt: skip
    return create_study(StudyCreate.model_validate(study), audit.session, team,
                        dispatcher, settings, response, digest, idempotency_key)  # fmt: skip
