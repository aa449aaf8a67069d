"""Studies: a grid of jobs submitted as one, and its members."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Uuid, true
from sqlalchemy.orm import Mapped, mapped_column

from jobs.store.base import JSON_VALUE, Base, UTCDateTime, utcnow

__all__ = ["Study", "StudyMember"]


class Study(Base):
    """A grid of jobs submitted as one: the base spec, the grid, and what it skipped.

    ``group_by`` names the swept paths the aggregate table groups by (the others, seeds,
    are averaged over). Its members are ``study_members`` rows pointing at ordinary jobs.
    """

    __tablename__ = "studies"
    __table_args__ = (
        Index("ix_studies_team_created", "team_id", "created_at", "id"),
        Index("uq_studies_team_idempotency", "team_id", "idempotency_key", unique=True),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    base: Mapped[dict[str, Any]] = mapped_column(JSON_VALUE)
    grid: Mapped[dict[str, Any]] = mapped_column(JSON_VALUE)
    group_by: Mapped[list[str]] = mapped_column(JSON_VALUE)
    skipped: Mapped[list[dict[str, Any]]] = mapped_column(JSON_VALUE)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # a retried create with this key returns this study (``Idempotency-Key``)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    # SHA-256 of the create's body as sent (jobs.store.repo.idempotency); None on older rows
    request_sha256: Mapped[str | None] = mapped_column(String(64))
    # ``grid`` (every member made at once) or ``search`` (members asked of a sampler)
    kind: Mapped[str] = mapped_column(String(16), default="grid", server_default="grid")
    search: Mapped[dict[str, Any] | None] = mapped_column(JSON_VALUE)
    # a search whose budget is spent: no member will be added (a grid is always done)
    search_done: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # a search's warm start as read at creation: the earlier members its sampler sees first
    # (``{"trials": [{"job", "params", "values"}], "skipped": {reason: count}}``)
    warm_start: Mapped[dict[str, Any] | None] = mapped_column(JSON_VALUE)


class StudyMember(Base):
    """One job of a study, with the grid values it was made of (``null``: did not apply).

    A search's member is one trial: ``position`` is its trial number (unique per study, the
    primary key), ``values`` the parameters its sampler suggested; once its job ended
    ``trial_state`` (``complete``, ``pruned``, ``fail``) and ``objectives`` record what the
    sampler is told, written once, so that the sampler's history is the store's.
    """

    __tablename__ = "study_members"

    study_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("studies.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), unique=True
    )
    values: Mapped[dict[str, Any]] = mapped_column(JSON_VALUE)
    trial_state: Mapped[str | None] = mapped_column(String(16))
    objectives: Mapped[list[float] | None] = mapped_column(JSON_VALUE)
    sampler_attrs: Mapped[dict[str, Any] | None] = mapped_column(JSON_VALUE)
