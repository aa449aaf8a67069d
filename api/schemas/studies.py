"""Request and response bodies of ``/v1/studies`` (``StudyCreate``, ``StudyPublic``, ...)."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.jobs import JobError, Progress
from jobs.specs.job import TEXT
from jobs.status import TERMINAL, JobStatus
from jobs.store.models import Job, Study, StudyMember
from jobs.studies.search.space import Pruner, SearchSpec
from jobs.studies.table import study_status

__all__ = [
    "AroundCreate",
    "ImportancePublic",
    "MetricStat",
    "StudiesPublic",
    "StudyCreate",
    "StudyMemberPublic",
    "StudyProgress",
    "StudyPublic",
    "StudyRow",
    "WarmStartPublic",
]


class StudyCreate(BaseModel):
    """A study: a base job spec and either a grid or a search over dotted spec paths.

    A grid: every combination of the lists becomes a job (``{"hypergradient.K": [1, 5],
    "seed": [0, 1]}``: four). A search: a sampler suggests members one by one, at most
    ``max_concurrent`` at once, until its trial count or compute budget is spent.
    ``group_by`` names the paths the aggregate table groups by; by default every swept
    path but the seeds, which are averaged over.
    """

    model_config = ConfigDict(strict=True, extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=200, pattern=TEXT)]
    base: dict[str, Any] = Field(description="a job spec; its `name` is replaced per member")
    grid: dict[str, Any] | None = Field(None, description="dotted spec path -> list of values")
    search: SearchSpec | None = Field(None, description="a space, sampler, budget, objectives")
    group_by: list[str] | None = None


class AroundCreate(BaseModel):
    """A search around a job (``POST /v1/jobs/{id}/search-around``): the search's settings.

    The space and the base come from the job (:mod:`jobs.studies.search.around`).
    """

    model_config = ConfigDict(strict=True, extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=200, pattern=TEXT)] | None = None
    n_trials: Annotated[int, Field(ge=1, le=10_000)] = 20
    max_concurrent: Annotated[int, Field(ge=1, le=64)] = 2
    sampler: Literal["tpe", "cmaes", "gp", "random", "qmc"] = "tpe"
    pruner: Pruner | None = None
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0


class StudyProgress(BaseModel):
    """How many members there are, how many have ended, and how many are in each status."""

    members: int
    finished: int
    fraction: float
    by_status: dict[str, int]


def _progress(counts: Counter[str]) -> StudyProgress:
    total = sum(counts.values())
    done = sum(counts[s] for s in TERMINAL)
    return StudyProgress(
        members=total,
        finished=done,
        fraction=round(done / total, 6) if total else 1.0,
        by_status={str(s): counts[s] for s in JobStatus},
    )


class StudyMemberPublic(BaseModel):
    """One member: its job, the grid values it was made of, its status and summary."""

    position: int
    job_id: uuid.UUID
    name: str
    values: dict[str, Any]
    status: JobStatus
    progress: Progress
    summary: dict[str, Any] | None = None
    error: JobError | None = None
    # a search's trial: ``running``, ``complete``, ``pruned`` or ``fail``; its objectives
    trial_state: str | None = None
    objectives: list[float] | None = None

    @classmethod
    def of(cls, member: StudyMember, job: Job) -> StudyMemberPublic:
        """The public view of a member row and its job."""
        error = None
        if job.error:
            error = JobError(type=job.error.get("type", "Error"),
                             detail=job.error.get("detail", ""),
                             iteration=job.error.get("iteration"))  # fmt: skip
        return cls(
            position=member.position,
            job_id=job.id,
            name=job.name,
            values=member.values,
            status=job.status,
            progress=Progress(
                iteration=job.iteration,
                iterations=job.iterations,
                fraction=round(job.iteration / max(job.iterations, 1), 6),
                eta_s=job.eta_s,
            ),
            summary=job.summary,
            error=error,
            trial_state=member.trial_state,
            objectives=member.objectives,
        )


class MetricStat(BaseModel):
    """Mean and sample standard deviation of one number over a row's succeeded members."""

    mean: float | None
    std: float | None
    n: int


class StudyRow(BaseModel):
    """One row of the aggregate table: a setting of the grouped paths."""

    values: dict[str, Any]
    members: int
    succeeded: int
    stats: dict[str, MetricStat]


class WarmStartPublic(BaseModel):
    """The earlier members a search's sampler saw first, read when it was created."""

    trials: int = Field(description="finished members shown to the sampler")
    skipped: dict[str, int] = Field(
        description="members not shown, by reason: not_succeeded, no_objective, outside_space"
    )


class ImportancePublic(BaseModel):
    """How much each searched path explains the first objective (Optuna's PED-ANOVA).

    Fractions summing to 1 over the paths, largest first; from the study's complete members.
    """

    evaluator: str
    objective: str
    trials: int
    params: dict[str, float]


class StudyPublic(BaseModel):
    """A study: its grid, status, progress and, in the detail view, members and table."""

    id: uuid.UUID
    name: str
    status: JobStatus
    progress: StudyProgress
    cancel_requested: bool
    base: dict[str, Any]
    grid: dict[str, Any]
    group_by: list[str]
    skipped: list[dict[str, Any]]
    created_at: datetime
    members: list[StudyMemberPublic] | None = None
    table: list[StudyRow] | None = None
    kind: str = "grid"
    search: SearchSpec | None = None
    search_done: bool = True
    #: a search's best member (one objective) or its Pareto front (several), as positions
    best: list[int] | None = None
    #: a warm-started search: how many earlier members its sampler saw, and skipped why
    warm_start: WarmStartPublic | None = None
    #: a search's parameter importance (detail view, two or more complete members)
    importance: ImportancePublic | None = None

    @classmethod
    def of(
        cls,
        study: Study,
        counts: Counter[str],
        members: list[StudyMemberPublic] | None = None,
        table: list[dict[str, Any]] | None = None,
        best: list[int] | None = None,
        importance: ImportancePublic | None = None,
    ) -> StudyPublic:
        """The public view of a study row, its members' status counts and its details."""
        return cls(
            id=study.id,
            name=study.name,
            status=study_status(counts, done=study.search_done),
            progress=_progress(counts),
            cancel_requested=study.cancel_requested,
            base=study.base,
            grid=study.grid,
            group_by=study.group_by,
            skipped=study.skipped,
            created_at=study.created_at,
            members=members,
            table=None if table is None else [StudyRow.model_validate(r) for r in table],
            kind=study.kind,
            search=None if study.search is None else SearchSpec.model_validate(study.search),
            search_done=study.search_done,
            best=best,
            warm_start=None if study.warm_start is None else WarmStartPublic(
                trials=len(study.warm_start.get("trials", [])),
                skipped=dict(study.warm_start.get("skipped", {}))),
            importance=importance,
        )  # fmt: skip


class StudiesPublic(BaseModel):
    """The team's studies, newest first (without members and table)."""

    data: list[StudyPublic]
    count: int
