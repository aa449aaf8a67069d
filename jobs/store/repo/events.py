"""The ``job_events`` log: one row per change of a job's status, in the change's transaction."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from jobs.store.models import JobEvent

__all__ = ["add_event"]


def add_event(
    session: Session, job_id: uuid.UUID, old: str | None, new: str, attempt: int, **detail: Any
) -> None:
    """Record the job's move from ``old`` to ``new`` status; ``detail`` says why."""
    session.add(
        JobEvent(
            job_id=job_id, from_status=old, to_status=new, attempt=attempt, detail=detail or None
        )
    )
