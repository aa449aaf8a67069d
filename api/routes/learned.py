"""``/v1/jobs/{id}/learned``: what a succeeded job learned, summarised for pictures."""

from __future__ import annotations

import json
import uuid

from fastapi import APIRouter

from api.auditor import AuditDep
from api.deps import SessionDep
from api.errors import ProblemError
from api.openapi import auth_responses, problem_doc
from api.schemas.learned import LearnedPublic
from jobs.status import JobStatus
from jobs.store import repo
from jobs.store.models import Job

router = APIRouter(
    prefix="/v1/jobs",
    tags=["jobs"],
    responses={
        **auth_responses(),
        404: problem_doc("no such job for this team"),
        422: problem_doc("invalid field(s), each named in `errors`"),
    },
)


@router.get(
    "/{job_id}/learned",
    response_model=LearnedPublic,
    responses={409: problem_doc("the job has not succeeded (or ran before this summary)")},
)
def get_learned(job_id: uuid.UUID, session: SessionDep, audit: AuditDep) -> LearnedPublic:
    """What a succeeded job learned: penalties, example weights, decays, step size, paths."""
    job = repo.get_job(session, audit.principal.team.id, job_id)
    if job is None:
        raise audit.not_found("job", Job.id, job_id)
    art = repo.load_artifact(session, job.id, "learned")
    if job.status != JobStatus.SUCCEEDED or art is None:
        raise ProblemError(
            409, f"job {job_id} is {job.status}: no summary of what it learned", slug="not-ready"
        )
    return LearnedPublic.model_validate(json.loads(art.data))
