"""The API's answers as typed objects: the same fields as the server's schemas.

The server's own models (``api.schemas``) sit in a package that imports FastAPI and
SQLAlchemy, so the client has these light copies; ``tests/client/test_models.py`` checks
each against the server's OpenAPI document, field for field. Unknown fields are ignored, so
an older client still reads a newer server's answers.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from jobs.status import JobStatus

__all__ = [
    "ArrayInfo",
    "Dataset",
    "DatasetJob",
    "Datasets",
    "Job",
    "JobError",
    "JobResult",
    "Jobs",
    "MetricStat",
    "PluginSource",
    "Progress",
    "Studies",
    "Study",
    "StudyMember",
    "StudyProgress",
    "StudyRow",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    #: the name of the matching schema in the server's OpenAPI document
    schema_name: ClassVar[str]


class Progress(_Model):
    """How far a job is: iterations done of its total, and the estimated time left."""

    schema_name = "Progress"
    iteration: int
    iterations: int
    fraction: float
    eta_s: float | None = None


class JobError(_Model):
    """Why a job failed: the error's type, its message and the iteration it happened at."""

    schema_name = "JobError"
    type: str
    detail: str
    iteration: int | None = None


class PluginSource(_Model):
    """The installed plugin package a problem kind comes from, and its version."""

    schema_name = "PluginSource"
    package: str
    version: str


class Job(_Model):
    """A job: its spec, status, progress, summary (once it has ended) and error."""

    schema_name = "JobPublic"
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

    @property
    def done(self) -> bool:
        """Whether the job has ended (succeeded, failed or cancelled)."""
        return self.status.terminal


class Jobs(_Model):
    """A page of jobs, newest first; ``next_cursor`` asks for the next (older) page."""

    schema_name = "JobsPublic"
    data: list[Job]
    count: int
    next_cursor: str | None = None


class JobResult(_Model):
    """The final metrics and hyperparameters of a succeeded job."""

    schema_name = "JobResult"
    id: uuid.UUID
    status: JobStatus
    iterations: int
    final_outer_loss: float | None = None
    best_outer_loss: float | None = None
    best_iteration: int | None = None
    metrics: dict[str, float]
    hparams: Any = None


class StudyProgress(_Model):
    """How many members there are, how many have ended, and how many are in each status."""

    schema_name = "StudyProgress"
    members: int
    finished: int
    fraction: float
    by_status: dict[str, int]


class StudyMember(_Model):
    """One member of a study: its job, the grid values it was made of, its outcome."""

    schema_name = "StudyMemberPublic"
    position: int
    job_id: uuid.UUID
    name: str
    values: dict[str, Any]
    status: JobStatus
    progress: Progress
    summary: dict[str, Any] | None = None
    error: JobError | None = None
    # a search's trial: running, complete, pruned or fail; the objectives its sampler saw
    trial_state: str | None = None
    objectives: list[float] | None = None


class MetricStat(_Model):
    """Mean and sample standard deviation of one number over a row's succeeded members."""

    schema_name = "MetricStat"
    mean: float | None
    std: float | None
    n: int


class StudyRow(_Model):
    """One row of a study's aggregate table: a setting of the grouped paths."""

    schema_name = "StudyRow"
    values: dict[str, Any]
    members: int
    succeeded: int
    stats: dict[str, MetricStat]


class Study(_Model):
    """A study: its grid, status, progress and, read one by one, its members and table."""

    schema_name = "StudyPublic"
    id: uuid.UUID
    name: str
    status: JobStatus
    progress: StudyProgress
    cancel_requested: bool
    base: dict[str, Any]
    grid: dict[str, Any] | None
    group_by: list[str]
    skipped: list[dict[str, Any]]
    created_at: datetime
    members: list[StudyMember] | None = None
    table: list[StudyRow] | None = None
    kind: str = "grid"
    search: dict[str, Any] | None = None
    search_done: bool = True
    # a search's best member (one objective) or its Pareto front (several), as positions
    best: list[int] | None = None
    # a warm-started search: earlier members its sampler saw, and those skipped by reason
    warm_start: dict[str, Any] | None = None
    # a search's parameter importance: evaluator, objective, trials, params (path -> share)
    importance: dict[str, Any] | None = None

    @property
    def done(self) -> bool:
        """Whether every member has ended."""
        return self.status.terminal


class Studies(_Model):
    """The team's studies, newest first (without members and table)."""

    schema_name = "StudiesPublic"
    data: list[Study]
    count: int


class ArrayInfo(_Model):
    """One array of a data set file: its name, dtype and shape."""

    schema_name = "ArrayPublic"
    name: str
    dtype: str
    shape: list[int]


class DatasetJob(_Model):
    """A job that uses a data set."""

    schema_name = "DatasetJob"
    id: uuid.UUID
    name: str
    status: JobStatus


class Dataset(_Model):
    """A data set: its file (sha256, size, format), what its arrays make, and its users."""

    schema_name = "DatasetPublic"
    id: uuid.UUID
    name: str
    sha256: str
    size: int
    format: str
    task: str
    n_classes: int
    n_features: int
    n_tasks: int
    rows: dict[str, int]
    arrays: list[ArrayInfo]
    created_at: datetime
    used_by: list[uuid.UUID] | None = None
    jobs: list[DatasetJob] = []


class Datasets(_Model):
    """The team's data sets and how much of its storage quota they use."""

    schema_name = "DatasetsPublic"
    data: list[Dataset]
    count: int
    bytes_used: int
    quota_bytes: int
