"""Data sets (issue 13): a team's named data sets over content-addressed, chunked blobs."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, LargeBinary, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from jobs.store.base import JSON_VALUE, Base, UTCDateTime, utcnow

__all__ = ["Dataset", "DatasetBlob", "DatasetChunk"]


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
    rows: Mapped[dict[str, Any]] = mapped_column(JSON_VALUE)
    arrays: Mapped[list[dict[str, Any]]] = mapped_column(JSON_VALUE)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # a retried upload with this key returns this data set (``Idempotency-Key``)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
