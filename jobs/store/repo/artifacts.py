"""A job's binary artifacts (learned hyperparameters, checkpoints)."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from jobs.store.models import (
    Artifact,
    utcnow,
)


def save_artifact(
    session: Session,
    job_id: uuid.UUID,
    kind: str,
    data: bytes,
    *,
    iteration: int = 0,
    media_type: str = "application/octet-stream",
) -> None:
    """Store (or replace) the job's artifact of this kind."""
    row = session.get(Artifact, (job_id, kind))
    if row is None:
        session.add(
            Artifact(
                job_id=job_id, kind=kind, data=data, iteration=iteration, media_type=media_type
            )
        )
    else:
        row.data, row.iteration, row.media_type, row.created_at = (
            data,
            iteration,
            media_type,
            utcnow(),
        )
    session.flush()


def load_artifact(session: Session, job_id: uuid.UUID, kind: str) -> Artifact | None:
    """The job's artifact of this kind as stored now (not a stale copy), or ``None``."""
    return session.get(Artifact, (job_id, kind), populate_existing=True)
