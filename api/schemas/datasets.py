"""Bodies of ``/v1/datasets``: a data set (its file, what its arrays make, its users), a list."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel

from jobs.models import Dataset
from jobs.status import JobStatus

__all__ = ["ArrayPublic", "DatasetJob", "DatasetPublic", "DatasetsPublic"]


class ArrayPublic(BaseModel):
    """One array of a data set file."""

    name: str
    dtype: str
    shape: list[int]


class DatasetJob(BaseModel):
    """A job whose spec names the data set."""

    id: uuid.UUID
    name: str
    status: JobStatus


class DatasetPublic(BaseModel):
    """A data set: its file (sha256, size, format), what its arrays make, and its users."""

    id: uuid.UUID
    name: str
    sha256: str
    size: int
    format: str
    task: str
    n_classes: int
    n_features: int
    # task ids 0..n_tasks-1 in the task column (task_interaction); 0 without one
    n_tasks: int
    rows: dict[str, int]
    arrays: list[ArrayPublic]
    created_at: datetime
    # queued or running jobs of the team whose spec names this data set (GET one only)
    used_by: list[uuid.UUID] | None = None
    # the team's recent jobs naming it, any status, newest first (at most 20)
    jobs: list[DatasetJob] = []

    @classmethod
    def of(
        cls,
        row: Dataset,
        used_by: list[uuid.UUID] | None = None,
        jobs: list[tuple[uuid.UUID, str, str]] | None = None,
    ) -> DatasetPublic:
        """The public view of a row."""
        return cls(
            id=row.id, name=row.name, sha256=row.sha256, size=row.size, format=row.format,
            task=row.task, n_classes=row.n_classes, n_features=row.n_features,
            n_tasks=row.n_tasks, rows=row.rows,
            arrays=[ArrayPublic(**a) for a in row.arrays], created_at=row.created_at,
            used_by=used_by,
            jobs=[DatasetJob(id=i, name=n, status=JobStatus(st)) for i, n, st in (jobs or [])[:20]],
        )  # fmt: skip


class DatasetsPublic(BaseModel):
    """The team's data sets, newest first, and its storage against the quota."""

    data: list[DatasetPublic]
    count: int
    bytes_used: int
    quota_bytes: int
