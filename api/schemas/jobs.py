"""Bodies of ``/v1/jobs``: a job (``JobPublic``), a page of them, its result and its trace.

The models' docstrings become the descriptions of their schemas in ``/openapi.json``, and so
of the classes a client generator writes from it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from jobs.models import Job
from jobs.status import JobStatus

__all__ = [
    "JobError",
    "JobPublic",
    "JobResult",
    "JobsPublic",
    "PluginSource",
    "Progress",
    "TracePublic",
]


class Progress(BaseModel):
    """How far a job is: iterations done of its total, and the estimated time left."""

    iteration: int
    iterations: int
    fraction: float
    eta_s: float | None = None


class JobError(BaseModel):
    """Why a job failed: the error's type, its message and the iteration it happened at."""

    type: str
    detail: str
    iteration: int | None = None


class PluginSource(BaseModel):
    """The installed plugin package a problem kind comes from, and its version."""

    package: str
    version: str


class JobPublic(BaseModel):
    """A job as the API shows it: spec, status, progress, summary and error.

    ``plugin`` names the package (and its version at submission) that added the job's
    problem kind; ``null`` for a built-in kind.
    """

    id: uuid.UUID
    name: str
    status: JobStatus
    queue: str
    spec: dict[str, Any]
    plugin: PluginSource | None = None
    progress: Progress
    attempts: int
    cancel_requested: bool
    summary: dict[str, Any] | None = None
    error: JobError | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime

    @classmethod
    def of(cls, job: Job) -> JobPublic:
        """The public view of a job row."""
        n = max(job.iterations, 1)
        error = None
        if job.error:
            error = JobError(
                type=job.error.get("type", "Error"),
                detail=job.error.get("detail", ""),
                iteration=job.error.get("iteration"),
            )
        return cls(
            id=job.id,
            name=job.name,
            status=job.status,
            queue=job.queue,
            spec=job.spec,
            plugin=PluginSource.model_validate(job.plugin) if job.plugin else None,
            progress=Progress(
                iteration=job.iteration,
                iterations=job.iterations,
                fraction=round(job.iteration / n, 6),
                eta_s=job.eta_s,
            ),
            attempts=job.attempts,
            cancel_requested=job.cancel_requested,
            summary=job.summary,
            error=error,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            updated_at=job.updated_at,
        )


class JobsPublic(BaseModel):
    """A page of jobs, newest first; ``next_cursor`` asks for the next (older) page."""

    data: list[JobPublic]
    count: int
    next_cursor: str | None = None


class JobResult(BaseModel):
    """The final metrics and hyperparameters of a succeeded job."""

    id: uuid.UUID
    status: JobStatus
    iterations: int
    final_outer_loss: float | None = None
    best_outer_loss: float | None = None
    best_iteration: int | None = None
    metrics: dict[str, float]
    hparams: Any = None


class TracePublic(BaseModel):
    """Columns of the trace; only the requested fields are present."""

    iteration: list[int]
    outer_loss: list[float | None] | None = None
    grad_norm: list[float | None] | None = None
    lr: list[float | None] | None = None
    time_s: list[float | None] | None = None
    exact_norm: list[float | None] | None = None
    cosine: list[float | None] | None = None
    rel_error: list[float | None] | None = None
    descent_ratio: list[float | None] | None = None
    peak_bytes: list[float | None] | None = None
