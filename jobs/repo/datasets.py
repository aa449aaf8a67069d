"""A team's data sets: stored in chunks, listed, read back by workers, deleted when unused.

The bytes live in the job store itself (PostgreSQL, or SQLite in the embedded mode), so no
other server is needed: ``dataset_blobs`` content-addressed by SHA-256, ``dataset_chunks``
holding them in pieces, ``datasets`` naming them per team. :func:`store_dataset` writes
blob, chunks and row in the caller's one transaction: a failure anywhere leaves nothing.
Chunks are inserted with Core statements, never as ORM objects, so the session's identity
map never holds a file's bytes.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from jobs.kinds.base import DatasetInfo
from jobs.models import Dataset, DatasetBlob, DatasetChunk, Job, utcnow
from jobs.repo.idempotency import find_keyed, insert_keyed, replayed
from jobs.repo.teams import lock_team
from jobs.status import JobStatus

__all__ = [
    "CHUNK_BYTES",
    "dataset_bytes_used",
    "dataset_info",
    "dataset_jobs",
    "dataset_lookup",
    "delete_dataset",
    "get_dataset",
    "jobs_using_dataset",
    "list_datasets",
    "read_dataset_chunks",
    "store_dataset",
]

# 4 MiB: few rows per file, and well under PostgreSQL's 1 GB bytea and a round trip's comfort
CHUNK_BYTES = 4 << 20
_ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)


def store_dataset(
    session: Session,
    team_id: uuid.UUID,
    *,
    name: str,
    path: Path,
    sha256: str,
    size: int,
    fmt: str,
    description: dict[str, Any],
    chunk_bytes: int = CHUNK_BYTES,
    idempotency_key: str | None = None,
) -> tuple[Dataset, bool]:
    """Add a data set from a validated file; its blob only if no equal file is stored.

    With an idempotency key already used, nothing is stored: that data set is returned.

    Args:
        session: the caller's transaction (it commits).
        team_id: the owner.
        name: the data set's name.
        path: the file, already checked (``jobs.datasets.checks.describe_file``).
        sha256: the file's hex digest, computed while it was received.
        size: its length in bytes.
        fmt: ``"npz"`` or ``"safetensors"``.
        description: ``task``, ``n_classes``, ``n_features``, ``n_tasks``, ``rows``,
            ``arrays``.
        chunk_bytes: the size of each stored chunk.
        idempotency_key: the request's ``Idempotency-Key``, if any.

    Returns:
        ``(data set, created)``.

    Raises:
        IdempotencyConflict: the key was used for another file or name.
    """

    def same(row: Dataset) -> bool:
        return (row.sha256, row.name) == (sha256, name)

    if idempotency_key is not None:
        existing = find_keyed(session, Dataset, team_id, idempotency_key)
        if existing is not None:
            return replayed(existing, same, "file or name"), False
    if session.get(DatasetBlob, sha256) is None:
        n_chunks = -(-size // chunk_bytes)
        session.execute(
            insert(DatasetBlob),
            [{"sha256": sha256, "size": size, "chunk_bytes": chunk_bytes,
              "n_chunks": n_chunks, "created_at": utcnow()}],
        )  # fmt: skip
        seq = 0
        with path.open("rb") as f:
            while block := f.read(chunk_bytes):
                session.execute(
                    insert(DatasetChunk), [{"sha256": sha256, "seq": seq, "data": block}]
                )
                seq += 1
        if seq != n_chunks:  # the file changed under us: store nothing
            raise ValueError(f"{path} holds {seq} chunks, {n_chunks} expected for {size} bytes")
    row = Dataset(
        id=uuid.uuid4(),
        team_id=team_id,
        name=name,
        sha256=sha256,
        size=size,
        format=fmt,
        task=description["task"],
        n_classes=description["n_classes"],
        n_features=description["n_features"],
        n_tasks=description.get("n_tasks", 0),
        rows=description["rows"],
        arrays=description["arrays"],
        created_at=utcnow(),
        idempotency_key=idempotency_key,
    )
    return insert_keyed(session, row, same, "file or name")


def dataset_bytes_used(session: Session, team_id: uuid.UUID) -> int:
    """The bytes of the team's data sets (each counted, even when two share a blob)."""
    total = session.scalar(select(func.coalesce(func.sum(Dataset.size), 0)).where(
        Dataset.team_id == team_id))  # fmt: skip
    return int(total or 0)


def list_datasets(session: Session, team_id: uuid.UUID) -> list[Dataset]:
    """The team's data sets, newest first."""
    query = (
        select(Dataset)
        .where(Dataset.team_id == team_id)
        .order_by(Dataset.created_at.desc(), Dataset.id)
    )
    return list(session.scalars(query))


def get_dataset(
    session: Session, team_id: uuid.UUID | None, dataset_id: uuid.UUID
) -> Dataset | None:
    """One data set of the team (of any team with ``team_id=None``: the workers' view)."""
    row = session.get(Dataset, dataset_id)
    if row is None or (team_id is not None and row.team_id != team_id):
        return None
    return row


def dataset_info(row: Dataset) -> DatasetInfo:
    """What admission needs of a stored data set (:class:`jobs.kinds.base.DatasetInfo`)."""
    return DatasetInfo(
        ref=str(row.id),
        name=row.name,
        task=row.task,
        n_classes=row.n_classes,
        n_features=row.n_features,
        rows={str(k): int(v) for k, v in row.rows.items()},
        n_tasks=row.n_tasks,
        arrays=frozenset(str(a["name"]) for a in row.arrays),
    )


def dataset_lookup(session: Session, team_id: uuid.UUID) -> Callable[[str], DatasetInfo | None]:
    """The team's data sets by id for :func:`jobs.specs.admission.admit`; ``None``: not theirs.

    The first lookup locks the team's row, so a concurrent delete of the data set goes
    first or waits for the caller's transaction (a job is never queued on a deleted one).
    """
    seen: dict[str, DatasetInfo | None] = {}

    def lookup(ref: str) -> DatasetInfo | None:
        if ref not in seen:  # a study's members name the same data set: one query
            if not seen:
                lock_team(session, team_id)
            row = get_dataset(session, team_id, uuid.UUID(ref))
            seen[ref] = dataset_info(row) if row is not None else None
        return seen[ref]

    return lookup


def jobs_using_dataset(
    session: Session, team_id: uuid.UUID, dataset_id: uuid.UUID, *, active_only: bool = True
) -> list[uuid.UUID]:
    """Ids of the team's jobs whose spec names the data set (queued or running only).

    The spec is JSON in both stores; a team has at most its quota of active jobs, so they
    are read and matched here rather than with each store's JSON operators.
    """
    query = select(Job.id, Job.spec).where(Job.team_id == team_id)
    if active_only:
        query = query.where(Job.status.in_([str(s) for s in _ACTIVE]))
    wanted = str(dataset_id)
    return [
        job_id
        for job_id, spec in session.execute(query.order_by(Job.created_at))
        if isinstance(spec, dict) and (spec.get("problem") or {}).get("dataset") == wanted
    ]


def dataset_jobs(
    session: Session, team_id: uuid.UUID, *, recent: int = 500
) -> dict[str, list[tuple[uuid.UUID, str, str]]]:
    """The team's jobs per data set id they name, newest first: ``(id, name, status)``.

    Only the team's ``recent`` newest jobs are looked at (a listing's cost stays bounded);
    :func:`jobs_using_dataset` sees every active one.
    """
    query = (
        select(Job.id, Job.name, Job.status, Job.spec)
        .where(Job.team_id == team_id)
        .order_by(Job.created_at.desc())
        .limit(recent)
    )
    out: dict[str, list[tuple[uuid.UUID, str, str]]] = {}
    for job_id, name, status, spec in session.execute(query):
        ref = (spec.get("problem") or {}).get("dataset") if isinstance(spec, dict) else None
        if isinstance(ref, str):
            out.setdefault(ref, []).append((job_id, name, status))
    return out


def delete_dataset(session: Session, dataset: Dataset) -> None:
    """Delete the row, and its blob and chunks when no other data set shares them."""
    sha = dataset.sha256
    session.delete(dataset)
    session.flush()
    others = session.scalar(select(func.count()).select_from(Dataset).where(Dataset.sha256 == sha))
    if not others:
        session.execute(delete(DatasetChunk).where(DatasetChunk.sha256 == sha))
        session.execute(delete(DatasetBlob).where(DatasetBlob.sha256 == sha))


def read_dataset_chunks(session: Session, sha256: str) -> Iterator[bytes]:
    """The blob's bytes chunk by chunk, one query each: memory holds one chunk at a time.

    Raises:
        LookupError: no such blob.
    """
    blob = session.get(DatasetBlob, sha256)
    if blob is None:
        raise LookupError(f"no stored data set file with sha256 {sha256}")
    for seq in range(blob.n_chunks):
        data = session.scalar(
            select(DatasetChunk.data).where(DatasetChunk.sha256 == sha256, DatasetChunk.seq == seq)
        )
        if data is None:
            raise LookupError(f"data set file {sha256} lacks chunk {seq} of {blob.n_chunks}")
        yield bytes(data)
