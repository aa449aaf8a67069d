"""The checks ``benchmarks.service.chaos`` runs on the store once the faults have stopped.

Each check returns ``(checked, violations)``: how many things it looked at, and one line per
thing that broke an invariant (an empty list is a pass).
"""

from __future__ import annotations

import hashlib
import io
import random
import uuid
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from benchmarks.service._chaos_clients import Ledger
from jobs.status import TERMINAL, JobStatus
from jobs.store import repo
from jobs.store.models import (
    Dataset,
    DatasetBlob,
    DatasetChunk,
    Job,
    Study,
    StudyMember,
    TracePoint,
)

Result = tuple[int, list[str]]


def terminal(sessions: sessionmaker[Session]) -> Result:
    """Every job in the store has ended, and succeeded: each spec is valid, so a failure
    is the faults' doing (an attempt lost for good, a write that never landed)."""
    with sessions() as s:
        jobs = s.execute(select(Job.id, Job.status, Job.error)).all()
    bad = [f"job {i} is {st}" for i, st, _ in jobs if st not in TERMINAL]
    bad += [f"job {i} failed: {e}" for i, st, e in jobs if st == JobStatus.FAILED]
    return len(jobs), bad


def accepted(sessions: sessionmaker[Session], ledger: Ledger) -> Result:
    """Nothing lost or doubled: every submit answered 201 is a job under its key, each key
    names at most one job, and every study created has all its members."""
    bad = []
    with sessions() as s:
        by_key = dict(s.execute(select(Job.idempotency_key, func.count()).group_by(
            Job.idempotency_key)).all())  # fmt: skip
        rows = dict(s.execute(select(Job.id, Job.idempotency_key)).all())
        members = dict(s.execute(select(StudyMember.study_id, func.count()).group_by(
            StudyMember.study_id)).all())  # fmt: skip
        studies = set(s.scalars(select(Study.id)))
    for job_id, key in ledger.accepted.items():
        if rows.get(uuid.UUID(job_id), "missing") != key:
            bad.append(f"accepted job {job_id} (key {key}) is not in the store under its key")
    for key in [*ledger.accepted.values(), *ledger.submits_given_up]:
        if by_key.get(key, 0) > 1:
            bad.append(f"key {key} names {by_key[key]} jobs")
    for study_id, n in ledger.studies.items():
        sid = uuid.UUID(study_id)
        if sid not in studies or members.get(sid, 0) != n:
            bad.append(f"study {study_id}: {members.get(sid, 0)} of {n} members stored")
    return len(ledger.accepted) + len(ledger.studies), bad


def traces(sessions: sessionmaker[Session]) -> Result:
    """Per job, the stored iterations are ``1..n`` with no gap and no repeat; ``n`` is the
    job's ``iterations`` when it succeeded. Returns the trace points checked."""
    q = (
        select(
            Job.id,
            Job.status,
            Job.iterations,
            func.count(TracePoint.iteration),
            func.count(func.distinct(TracePoint.iteration)),
            func.coalesce(func.min(TracePoint.iteration), 1),
            func.coalesce(func.max(TracePoint.iteration), 0),
        )
        .outerjoin(TracePoint, TracePoint.job_id == Job.id)
        .group_by(Job.id)
    )
    bad, points = [], 0
    with sessions() as s:
        for job_id, status, iterations, n, distinct, lo, hi in s.execute(q):
            points += n
            if n != distinct:
                bad.append(f"job {job_id}: {n - distinct} duplicate trace points")
            if (lo, hi) != (1, distinct):
                bad.append(f"job {job_id}: iterations {lo}..{hi} hold {distinct} points")
            if status == JobStatus.SUCCEEDED and distinct != iterations:
                bad.append(f"job {job_id} succeeded with {distinct} of {iterations} points")
    return points, bad


def _hparams(s: Session, job_id: uuid.UUID) -> dict[str, np.ndarray] | None:
    art = repo.load_artifact(s, job_id, "hparams")
    if art is None:
        return None
    with np.load(io.BytesIO(art.data)) as z:
        return {k: z[k] for k in z.files}


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    """The same arrays by name, bit for bit and of the same dtype."""
    return list(a) == list(b) and all(
        a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes() for k in a
    )


def references(sessions: sessionmaker[Session], n: int, rng: random.Random) -> Result:
    """A sample of succeeded jobs (interrupted ones first, and at least one job on an
    uploaded data set when any succeeded) against the same spec run uninterrupted in this
    process: the outer losses and final hparams bit for bit."""
    import tempfile
    from pathlib import Path

    from tests.support import reference_arrays
    from worker.dataset_cache import DatasetCache
    from worker.datasets import DatasetSource

    with sessions() as s:
        done = list(
            s.execute(
                select(Job.id, Job.spec, Job.attempts, Job.team_id).where(
                    Job.status == JobStatus.SUCCEEDED
                )
            ).all()
        )
    rng.shuffle(done)
    done.sort(key=lambda d: -d.attempts)  # stable: a random pick among equals
    on_upload = [d for d in done if "dataset" in d.spec["problem"]]
    sample = done[:n]
    if on_upload and not any(d in sample for d in on_upload):
        sample = [*done[: max(n - 1, 0)], on_upload[0]]
    cache: dict[str, tuple[list[float], dict[str, np.ndarray]]] = {}
    bad = []
    with tempfile.TemporaryDirectory(prefix="chaos-ref-") as tmp:
        files = DatasetCache(Path(tmp), max_bytes=1 << 30)
        for job_id, spec, _, team_id in sample:
            plain = {k: v for k, v in spec.items() if k != "name"}
            key = repr(sorted(plain.items()))
            if key not in cache:
                source = DatasetSource(sessions, team_id, files, seed=spec.get("seed", 0))
                cache[key] = reference_arrays(spec, datasets=source)
            losses, hparams = cache[key]
            with sessions() as s:
                trace = repo.trace_columns(s, job_id, fields=["outer_loss"])
                got = _hparams(s, job_id)
            what = "a data set job" if "dataset" in spec["problem"] else "job"
            if trace["outer_loss"] != losses:
                bad.append(f"{what} {job_id}: outer losses differ from the uninterrupted run")
            if got is None or not _same(got, hparams):
                bad.append(f"{what} {job_id}: hparams differ from the uninterrupted run")
    return len(sample), bad


def datasets(sessions: sessionmaker[Session], ledger: Ledger) -> Result:
    """No data set half-written: each blob holds chunks ``0..n_chunks-1`` adding up to its
    size and hashing to its name; no blob without a data set, no data set without a blob;
    each upload answered 201 is stored with the hash of the bytes sent."""
    bad = []
    with sessions() as s:
        blobs = s.scalars(select(DatasetBlob)).all()
        rows = {str(d.id): d.sha256 for d in s.scalars(select(Dataset))}
        chunk_blobs = set(s.scalars(select(DatasetChunk.sha256).distinct()))
        for blob in blobs:
            h, seqs, size = hashlib.sha256(), [], 0
            for seq, data in s.execute(
                select(DatasetChunk.seq, DatasetChunk.data)
                .where(DatasetChunk.sha256 == blob.sha256)
                .order_by(DatasetChunk.seq)
            ):
                seqs.append(seq)
                size += len(data)
                h.update(data)
            if seqs != list(range(blob.n_chunks)) or size != blob.size:
                bad.append(f"blob {blob.sha256[:12]}: chunks {seqs}, {size} of {blob.size} bytes")
            elif h.hexdigest() != blob.sha256:
                bad.append(f"blob {blob.sha256[:12]}: its chunks hash to {h.hexdigest()[:12]}")
    names = {b.sha256 for b in blobs}
    bad += [f"orphan blob {sha[:12]}: no data set" for sha in names - set(rows.values())]
    bad += [f"orphan chunks of {sha[:12]}: no blob" for sha in chunk_blobs - names]
    bad += [f"data set {d} has no blob" for d, sha in rows.items() if sha not in names]
    for dataset_id, sha in ledger.uploads.items():
        if rows.get(dataset_id) != sha:
            bad.append(f"upload {dataset_id} stored as {rows.get(dataset_id)}, sent {sha}")
    return len(blobs), bad


def leases(sessions: sessionmaker[Session], live: set[str]) -> Result:
    """No lease left behind: no job ``running`` unless a live worker (``host:pid``) holds it."""
    with sessions() as s:
        running = s.execute(select(Job.id, Job.worker).where(Job.status == JobStatus.RUNNING)).all()
    bad = [f"job {i} running on {w}, not a live worker" for i, w in running if w not in live]
    return len(running), bad


def wait_terminal(sessions: sessionmaker[Session], timeout_s: float) -> dict[str, Any]:
    """Wait until no job is queued or running; return the jobs per status then."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with sessions() as s:
                counts = dict(
                    s.execute(select(Job.status, func.count()).group_by(Job.status)).all()
                )
        except Exception:  # the store may still be coming back from its last restart
            counts = {JobStatus.QUEUED: -1}
        if not any(counts.get(st, 0) for st in (JobStatus.QUEUED, JobStatus.RUNNING)):
            return counts
        if time.monotonic() > deadline:
            return counts
        time.sleep(0.5)


def unanswered(sessions: sessionmaker[Session], ledger: Ledger) -> dict[str, int]:
    """Studies and data sets in the store that no client was answered 201 for: what a
    retried ``POST`` without an ``Idempotency-Key`` (studies and uploads take none) adds
    when the answer to the first try was lost. Not lost work, so not a violation; counted."""
    with sessions() as s:
        studies = {str(i) for i in s.scalars(select(Study.id))}
        stored = {str(i) for i in s.scalars(select(Dataset.id))}
    return {
        "studies_stored_unanswered": len(studies - set(ledger.studies)),
        "datasets_stored_unanswered": len(stored - set(ledger.uploads)),
    }


def interruptions(sessions: sessionmaker[Session]) -> dict[str, Any]:
    """How often jobs were taken off a worker and resumed: ``running -> queued`` changes by
    reason (``lease expired``: a killed worker; ``preempted``: fair share), and the jobs that
    ran more than once."""
    from jobs.store.models import JobEvent

    with sessions() as s:
        events = s.execute(
            select(JobEvent.detail).where(
                JobEvent.from_status == JobStatus.RUNNING, JobEvent.to_status == JobStatus.QUEUED
            )
        ).all()
        resumed = s.scalar(select(func.count()).where(Job.attempts > 1))
    reasons: dict[str, int] = {}
    for (detail,) in events:
        why = (detail or {}).get("reason", "?")
        reasons[why] = reasons.get(why, 0) + 1
    return {"requeued_by_reason": reasons, "jobs_run_more_than_once": resumed}
