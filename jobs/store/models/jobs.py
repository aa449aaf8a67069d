"""Jobs, their state transitions and artifacts, and the workers that run them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    Uuid,
    desc,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from jobs.status import STATUSES, TERMINAL, JobStatus, QueueKind
from jobs.store.base import BIG_ID, JSON_VALUE, Base, UTCDateTime, check_in, utcnow

__all__ = ["Artifact", "Job", "JobEvent", "JobTeamCount", "Worker"]

_QUEUED = text("status = 'queued'")
_REQUEUED = text("from_status = 'running' AND to_status = 'queued'")
#: the jobs a trace compaction pass may take (jobs.store.repo.trace_compaction)
COMPACTION_DUE = "NOT trace_compacted AND " + check_in("status", tuple(sorted(TERMINAL)))


class Job(Base):
    """One submitted job and where it stands; ``attempts`` doubles as the lease's fence."""

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(check_in("status", STATUSES), name="status"),
        CheckConstraint(check_in("queue", tuple(QueueKind)), name="queue"),
        UniqueConstraint("team_id", "idempotency_key", name="uq_jobs_team_idempotency"),
        Index("ix_jobs_team_created", "team_id", "created_at", "id"),
        Index("ix_jobs_status_lease", "status", "lease_until"),
        # the job list filtered by status (newest first); per-team quota checks count
        # queued and running jobs on its prefix
        Index("ix_jobs_team_status_created", "team_id", "status", "created_at", "id"),
        # the claim reads the running jobs of one queue kind
        Index("ix_jobs_queue_status", "queue", "status"),
        # ... and each team's first queued job by one probe (jobs.store.repo.scheduling);
        # PostgreSQL only: the embedded store ranks its short queue instead
        Index(
            "ix_jobs_queued_head",
            "team_id",
            "queue",
            desc("priority"),
            "created_at",
            "id",
            postgresql_where=_QUEUED,
        ).ddl_if(dialect="postgresql"),
        # the compaction pass's jobs, oldest finished first: millions of jobs ended and
        # compacted long ago are not in it (a pass read them all, 0.2 s per 300,000)
        Index(
            "ix_jobs_compaction_due",
            "finished_at",
            postgresql_where=text(COMPACTION_DUE),
            sqlite_where=text(COMPACTION_DUE),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON_VALUE)
    queue: Mapped[str] = mapped_column(String(32), default=QueueKind.CPU)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    # SHA-256 of the submit's body as the client sent it (jobs.store.repo.idempotency):
    # a retry is the same request across releases; None on rows of releases before it
    request_sha256: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    worker: Mapped[str | None] = mapped_column(String(200))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    iteration: Mapped[int] = mapped_column(Integer, default=0)
    iterations: Mapped[int] = mapped_column(Integer)
    eta_s: Mapped[float | None] = mapped_column(Double)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON_VALUE)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON_VALUE)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # fair share: jobs.fairshare.Priority; the current attempt's start (preemption spares
    # young attempts); a scheduler's request to stop at the next checkpoint and requeue
    priority: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    running_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    preempt_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # set by the trace compaction in the transaction that records it (trace_compactions):
    # the pass finds the jobs still due by ix_jobs_compaction_due instead of passing over
    # every job it compacted before
    trace_compacted: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # the plugin package a plugin kind came from at submission, {"package", "version"}
    # (jobs.plugins); None for a built-in kind
    plugin: Mapped[dict[str, Any] | None] = mapped_column(JSON_VALUE)


class JobTeamCount(Base):
    """A (queue, team)'s jobs ``queued`` (no cancel requested) and ``running`` (0023).

    What the claim's snapshot reads. PostgreSQL keeps it: triggers on ``jobs`` change it in
    the writer's transaction, nothing here writes it. The embedded SQLite store leaves it
    empty (its claim counts the jobs).
    """

    __tablename__ = "job_team_counts"

    queue: Mapped[str] = mapped_column(String(32), primary_key=True)
    team_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    queued: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    running: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class Worker(Base):
    """A live worker process, as its reaper thread last reported it (the pool's heartbeats)."""

    __tablename__ = "workers"
    __table_args__ = (CheckConstraint(check_in("queue", tuple(QueueKind)), name="queue"),)

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    queue: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class JobEvent(Base):
    """Every state transition of a job, in order."""

    __tablename__ = "job_events"
    # the few requeues among millions of events: /metrics counts the preempted ones
    __table_args__ = (
        Index(
            "ix_job_events_requeued", "job_id", postgresql_where=_REQUEUED, sqlite_where=_REQUEUED
        ),
    )

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True, autoincrement=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON_VALUE)


class Artifact(Base):
    """Bytes a job leaves: its latest ``checkpoint`` and its final ``hparams`` (npz)."""

    __tablename__ = "artifacts"

    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    iteration: Mapped[int] = mapped_column(Integer, default=0)
    media_type: Mapped[str] = mapped_column(String(100), default="application/octet-stream")
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
