"""The store's tables (SQLAlchemy 2): PostgreSQL is the record of every job's state.

``trace_points`` is narrow on purpose: one row per (job, iteration) with a float column per
record key, so a dashboard poll is an index range scan; ``trace_blocks`` rolls it up per 64
iterations (each field's extremes and where they are) so that downsampling a long trace
reads n/64 rows.
Timestamps are stored as naive UTC and handed back timezone-aware, the same on SQLite.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
    false,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from jobs.status import STATUSES, TERMINAL, JobStatus

__all__ = [
    "STATUSES",
    "TERMINAL",
    "TRACE_BLOCK",
    "TRACE_FIELDS",
    "ApiKey",
    "Artifact",
    "AuditEvent",
    "Base",
    "Dataset",
    "DatasetBlob",
    "DatasetChunk",
    "Job",
    "JobEvent",
    "Study",
    "StudyMember",
    "Team",
    "TracePoint",
    "Webhook",
    "WebhookDelivery",
    "Worker",
    "trace_blocks",
    "utcnow",
]

# The float columns of a trace point: core.fit's record keys besides `iteration`.
TRACE_FIELDS = (
    "outer_loss",
    "grad_norm",
    "lr",
    "time_s",
    "exact_norm",
    "cosine",
    "rel_error",
    "descent_ratio",
    "peak_bytes",
)


def utcnow() -> datetime:
    """The current time, timezone-aware UTC: what every timestamp column holds."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out; naive UTC in the column."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


_JSON = JSON().with_variant(JSONB(), "postgresql")
# SQLite only auto-increments an INTEGER PRIMARY KEY.
_BIGID = BigInteger().with_variant(Integer(), "sqlite")

_NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """The tables' base: constraint names follow one convention, so migrations can name them."""

    metadata = MetaData(naming_convention=_NAMING)


class Team(Base):
    """A team: it owns jobs and API keys; nothing of one team is visible to another."""

    __tablename__ = "teams"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # fair share (jobs.fairshare): NULL takes the settings' default
    weight: Mapped[float | None] = mapped_column(Double)
    max_running_cpu: Mapped[int | None] = mapped_column(Integer)
    max_running_gpu: Mapped[int | None] = mapped_column(Integer)


class ApiKey(Base):
    """An API key: only its keyed hash is stored; ``prefix`` identifies it in listings.

    ``hash_scheme`` is ``hmac-sha256`` (see ``jobs.keys``) or, for rows written before the
    server secret existed, ``sha256``: the server default, so that a row inserted by an older
    API during a rolling upgrade is read correctly. ``secret_id`` names the server secret of an
    HMAC row (a rotation moves rows from the previous secret to the current one). ``scope``
    ``admin`` may manage the team's keys.
    """

    __tablename__ = "api_keys"
    __table_args__ = (CheckConstraint("scope IN ('team', 'admin')", name="scope"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    team_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("teams.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100), default="")
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    hash_scheme: Mapped[str] = mapped_column(
        String(16), default="hmac-sha256", server_default="sha256"
    )
    scope: Mapped[str] = mapped_column(String(16), default="team", server_default="team")
    # jobs.keys.secret_id of the server secret key_hash is keyed with; NULL before 0004
    secret_id: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Job(Base):
    """One submitted job and where it stands; ``attempts`` doubles as the lease's fence."""

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(f"status IN {tuple(map(str, STATUSES))!r}", name="status"),
        UniqueConstraint("team_id", "idempotency_key", name="uq_jobs_team_idempotency"),
        Index("ix_jobs_team_created", "team_id", "created_at", "id"),
        Index("ix_jobs_status_lease", "status", "lease_until"),
        # per-team quota checks count queued and running jobs
        Index("ix_jobs_team_status", "team_id", "status"),
        # the claim reads the queued jobs of one queue kind
        Index("ix_jobs_queue_status", "queue", "status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    spec: Mapped[dict[str, Any]] = mapped_column(_JSON)
    queue: Mapped[str] = mapped_column(String(32), default="cpu")
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    worker: Mapped[str | None] = mapped_column(String(200))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    iteration: Mapped[int] = mapped_column(Integer, default=0)
    iterations: Mapped[int] = mapped_column(Integer)
    eta_s: Mapped[float | None] = mapped_column(Double)
    summary: Mapped[dict[str, Any] | None] = mapped_column(_JSON)
    error: Mapped[dict[str, Any] | None] = mapped_column(_JSON)
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
    # the plugin package a plugin kind came from at submission, {"package", "version"}
    # (jobs.plugins); None for a built-in kind
    plugin: Mapped[dict[str, Any] | None] = mapped_column(_JSON)


class Worker(Base):
    """A live worker process, as its reaper thread last reported it (the pool's heartbeats)."""

    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    queue: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class JobEvent(Base):
    """Every state transition of a job, in order."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(_BIGID, primary_key=True, autoincrement=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    detail: Mapped[dict[str, Any] | None] = mapped_column(_JSON)


class TracePoint(Base):
    """One hyper-iteration's record; NaN (skipped diagnostics) is stored as NULL."""

    __tablename__ = "trace_points"

    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    iteration: Mapped[int] = mapped_column(Integer, primary_key=True)
    outer_loss: Mapped[float | None] = mapped_column(Double)
    grad_norm: Mapped[float | None] = mapped_column(Double)
    lr: Mapped[float | None] = mapped_column(Double)
    time_s: Mapped[float | None] = mapped_column(Double)
    exact_norm: Mapped[float | None] = mapped_column(Double)
    cosine: Mapped[float | None] = mapped_column(Double)
    rel_error: Mapped[float | None] = mapped_column(Double)
    descent_ratio: Mapped[float | None] = mapped_column(Double)
    # bytes the hypergradient held at its peak (CUDA peak, or saved for backward on CPU)
    peak_bytes: Mapped[float | None] = mapped_column(Double)


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


# Iterations per row of trace_blocks: block b holds iterations b*64+1 .. (b+1)*64.
TRACE_BLOCK = 64

# A rollup of trace_points kept by the writer: per block of TRACE_BLOCK iterations, each
# field's minimum and maximum and where they are. Downsampling a long trace reads these
# (n / 64 rows) instead of every point.
trace_blocks = Table(
    "trace_blocks",
    Base.metadata,
    Column("job_id", Uuid, ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("block", Integer, primary_key=True),
    *[
        Column(f"{field}_{part}", Integer if part.endswith("_it") else Double)
        for field in TRACE_FIELDS
        for part in ("min", "min_it", "max", "max_it")
    ],
)


# -- data sets (issue 13) ------------------------------------------------------------------


class DatasetBlob(Base):
    """An uploaded file's bytes, content-addressed by SHA-256 and shared by equal uploads.

    The bytes are ``dataset_chunks`` rows of at most ``chunk_bytes`` each, written in the
    transaction that adds the first ``datasets`` row naming the blob; the last dataset to
    go takes its blob with it.
    """

    __tablename__ = "dataset_blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    chunk_bytes: Mapped[int] = mapped_column(Integer)
    n_chunks: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DatasetChunk(Base):
    """Chunk ``seq`` (0-based) of a blob's bytes."""

    __tablename__ = "dataset_chunks"

    sha256: Mapped[str] = mapped_column(
        ForeignKey("dataset_blobs.sha256", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Dataset(Base):
    """A team's named data set: a blob and what its validation found (``jobs.datasets.checks``)."""

    __tablename__ = "datasets"
    __table_args__ = (
        Index("ix_datasets_team_created", "team_id", "created_at"),
        Index("uq_datasets_team_idempotency", "team_id", "idempotency_key", unique=True),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    sha256: Mapped[str] = mapped_column(ForeignKey("dataset_blobs.sha256"), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    format: Mapped[str] = mapped_column(String(16))
    task: Mapped[str] = mapped_column(String(16))
    n_classes: Mapped[int] = mapped_column(Integer, default=0)
    n_features: Mapped[int] = mapped_column(Integer)
    n_tasks: Mapped[int] = mapped_column(Integer, default=0)
    rows: Mapped[dict[str, Any]] = mapped_column(_JSON)
    arrays: Mapped[list[dict[str, Any]]] = mapped_column(_JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # a retried upload with this key returns this data set (``Idempotency-Key``)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))


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
    base: Mapped[dict[str, Any]] = mapped_column(_JSON)
    grid: Mapped[dict[str, Any]] = mapped_column(_JSON)
    group_by: Mapped[list[str]] = mapped_column(_JSON)
    skipped: Mapped[list[dict[str, Any]]] = mapped_column(_JSON)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # a retried create with this key returns this study (``Idempotency-Key``)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))


class StudyMember(Base):
    """One job of a study, with the grid values it was made of (``null``: did not apply)."""

    __tablename__ = "study_members"

    study_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("studies.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), unique=True
    )
    values: Mapped[dict[str, Any]] = mapped_column(_JSON)


class Webhook(Base):
    """A URL a team's terminal job and study events are POSTed to, signed with ``secret``.

    The secret is shown once, at creation; it is stored as is because every delivery is
    signed with it (HMAC-SHA256, see ``jobs.webhooks``).
    """

    __tablename__ = "webhooks"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    team_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("teams.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str] = mapped_column(String(200), default="")
    secret: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebhookDelivery(Base):
    """One event for one webhook: pending until delivered, or failed after its attempts."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("webhook_id", "event_id", name="uq_webhook_deliveries_event"),
        CheckConstraint("status IN ('pending', 'delivered', 'failed')", name="status"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(_BIGID, primary_key=True, autoincrement=True)
    webhook_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhooks.id", ondelete="CASCADE"), index=True
    )
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    event_type: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    payload: Mapped[dict[str, Any]] = mapped_column(_JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    response_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


# defined in its own module on this Base; imported last, when Base and UTCDateTime exist
from jobs.audit_models import AuditEvent  # noqa: E402
