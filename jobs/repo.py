"""Queries and state transitions of the job store, shared by the API and the workers.

Every transition is a conditional ``UPDATE ... WHERE status = ...`` so that concurrent
actors (API, worker, reaper) never overwrite each other: a duplicate task delivery claims
nothing, and a worker whose lease was taken away (``attempts`` moved on) writes nothing more.
Each change of status also inserts a ``job_events`` row in the same transaction.
"""

from __future__ import annotations

import base64
import hmac
import math
import operator
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Double,
    Integer,
    and_,
    any_,
    bindparam,
    case,
    delete,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy import cast as sa_cast
from sqlalchemy.dialects.postgresql import ARRAY as PG_ARRAY
from sqlalchemy.dialects.postgresql import array as pg_array
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from jobs import keys
from jobs.models import (
    TERMINAL,
    TRACE_BLOCK,
    TRACE_FIELDS,
    ApiKey,
    Artifact,
    Job,
    JobEvent,
    Team,
    TracePoint,
    trace_blocks,
    utcnow,
)
from jobs.spec import JobSpec

__all__ = [
    "Claim",
    "IdempotencyConflict",
    "Principal",
    "TeamRef",
    "at_running_limit",
    "authenticate",
    "cancel_job",
    "claim_job",
    "count_active_jobs",
    "create_api_key",
    "create_job",
    "decode_cursor",
    "ensure_team",
    "find_idempotent",
    "finish_job",
    "get_api_key",
    "get_job",
    "heartbeat",
    "list_api_keys",
    "list_jobs",
    "load_artifact",
    "lock_team",
    "next_queued_of_team",
    "reap",
    "release_job",
    "revoke_api_key",
    "save_artifact",
    "set_api_key_scope",
    "trace_columns",
    "trace_span",
    "trace_version",
    "truncate_trace",
    "utcnow",
    "verify_key",
    "write_trace",
]

# -- teams, keys and quotas ----------------------------------------------------------------


def ensure_team(session: Session, name: str) -> Team:
    """The team called ``name``, created if missing."""
    team = session.scalar(select(Team).where(Team.name == name))
    if team is None:
        team = Team(name=name)
        session.add(team)
        session.flush()
    return team


@dataclass(frozen=True)
class TeamRef:
    """A team's id and name, detached from any session (a principal outlives its session)."""

    id: uuid.UUID
    name: str


@dataclass(frozen=True)
class Principal:
    """Who an authenticated request is: the key's team, prefix and scope (never the key)."""

    team: TeamRef
    key_id: uuid.UUID
    prefix: str
    scope: str
    rehashed: bool = False  # the row was rewritten under the current secret: the caller commits

    @property
    def admin(self) -> bool:
        return self.scope == "admin"


def create_api_key(
    session: Session, team: Team | TeamRef, name: str = "", *, secret: bytes, scope: str = "team"
) -> tuple[ApiKey, str]:
    """A new key for ``team``; the plaintext is returned once and never stored.

    Raises:
        ValueError: ``scope`` is not ``team`` or ``admin``.
    """
    if scope not in keys.SCOPES:
        raise ValueError(f"scope must be one of {keys.SCOPES}, got {scope!r}")
    prefix, key = keys.new_key()
    row = ApiKey(
        team_id=team.id,
        name=name,
        prefix=prefix,
        key_hash=keys.hash_key(key, keys.HMAC_SHA256, secret),
        hash_scheme=keys.HMAC_SHA256,
        secret_id=keys.secret_id(secret),
        scope=scope,
    )
    session.add(row)
    session.flush()
    return row, key


# compared against when no row matches, so that a miss costs about what a hit does
_DUMMY_HASH = "0" * 64


def verify_key(
    session: Session, key: str, *, secret: bytes, previous: bytes | None = None
) -> Principal | None:
    """The principal of an unrevoked ``key``, else ``None`` (constant-time comparison).

    One query reads the key's row and its team. The row's ``secret_id`` says which secret its
    HMAC is keyed with: ``secret``, or ``previous`` during a rotation (a row from before
    ``secret_id`` existed is tried with both). A row hashed with plain SHA-256 or under
    ``previous``, or without ``secret_id``, is accepted and rewritten as HMAC-SHA256 under
    ``secret`` in the session (flushed, not committed: ``Principal.rehashed`` tells the
    caller to commit).
    """
    prefix = keys.split_key(key)
    row = None
    if prefix:
        row = session.execute(
            select(ApiKey.id, ApiKey.prefix, ApiKey.key_hash, ApiKey.hash_scheme, ApiKey.scope,
                   ApiKey.secret_id, ApiKey.revoked_at, Team.id.label("team_id"),
                   Team.name.label("team_name"))
            .join(Team, Team.id == ApiKey.team_id)
            .where(ApiKey.prefix == prefix)
        ).first()  # fmt: skip
    scheme = row.hash_scheme if row is not None else keys.HMAC_SHA256
    expected = row.key_hash if row is not None else _DUMMY_HASH
    current_id = keys.secret_id(secret)
    candidates = [secret]  # the secrets the row may be keyed with, most likely first
    if previous is not None and scheme == keys.HMAC_SHA256 and row is not None:
        if row.secret_id == keys.secret_id(previous):
            candidates = [previous]
        elif row.secret_id is None:
            candidates = [secret, previous]
    ok = any(hmac.compare_digest(expected, keys.hash_key(key, scheme, c)) for c in candidates)
    if row is None or not ok or row.revoked_at is not None:
        return None
    rehashed = False
    # the key is right: move its row to the current secret unless it is there already
    if scheme != keys.HMAC_SHA256 or row.secret_id != current_id:
        res = session.execute(
            update(ApiKey)
            .where(ApiKey.id == row.id, ApiKey.key_hash == row.key_hash)
            .values(key_hash=keys.hash_key(key, keys.HMAC_SHA256, secret),
                    hash_scheme=keys.HMAC_SHA256, secret_id=current_id)
        )  # fmt: skip
        rehashed = res.rowcount == 1
    return Principal(team=TeamRef(row.team_id, row.team_name), key_id=row.id, prefix=row.prefix,
                     scope=row.scope, rehashed=rehashed)  # fmt: skip


def authenticate(
    session: Session, key: str, *, secret: bytes, previous: bytes | None = None
) -> TeamRef | None:
    """The team owning an unrevoked ``key``, else ``None`` (see :func:`verify_key`)."""
    principal = verify_key(session, key, secret=secret, previous=previous)
    return None if principal is None else principal.team


def list_api_keys(
    session: Session, team_name: str | None = None, *, team_id: uuid.UUID | None = None
) -> list[tuple[ApiKey, str]]:
    """``(key, team name)`` pairs, oldest first, of one team (by name or id) or of all."""
    q = select(ApiKey, Team.name).join(Team, Team.id == ApiKey.team_id)
    if team_name is not None:
        q = q.where(Team.name == team_name)
    if team_id is not None:
        q = q.where(Team.id == team_id)
    return [(k, n) for k, n in session.execute(q.order_by(ApiKey.created_at, ApiKey.prefix))]


def get_api_key(
    session: Session, prefix: str, *, team_id: uuid.UUID | None = None
) -> ApiKey | None:
    """The key with ``prefix`` (of ``team_id`` only, when given), else ``None``."""
    q = select(ApiKey).where(ApiKey.prefix == prefix)
    if team_id is not None:
        q = q.where(ApiKey.team_id == team_id)
    return session.scalar(q)


def revoke_api_key(session: Session, prefix: str, *, team_id: uuid.UUID | None = None) -> bool:
    """Revoke the key with ``prefix`` (of ``team_id`` only, when given).

    Returns:
        ``False`` if there is no such unrevoked key.
    """
    q = update(ApiKey).where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None))
    if team_id is not None:
        q = q.where(ApiKey.team_id == team_id)
    res = session.execute(q.values(revoked_at=utcnow()))
    return res.rowcount == 1


def set_api_key_scope(session: Session, prefix: str, scope: str) -> bool:
    """Give the key with ``prefix`` another scope; ``False`` if there is no such key."""
    if scope not in keys.SCOPES:
        raise ValueError(f"scope must be one of {keys.SCOPES}, got {scope!r}")
    res = session.execute(update(ApiKey).where(ApiKey.prefix == prefix).values(scope=scope))
    return res.rowcount == 1


def count_active_jobs(session: Session, team_id: uuid.UUID) -> dict[str, int]:
    """``{"queued": n, "running": m}`` for the team (the quota checks' counts)."""
    rows = session.execute(
        select(Job.status, func.count())
        .where(Job.team_id == team_id, Job.status.in_(("queued", "running")))
        .group_by(Job.status)
    ).all()
    counts = {"queued": 0, "running": 0}
    counts.update({status: int(n) for status, n in rows})
    return counts


def find_idempotent(session: Session, team_id: uuid.UUID, idempotency_key: str) -> Job | None:
    """The team's job submitted with ``idempotency_key``, if any (a replay, not a new job)."""
    return _by_idempotency(session, team_id, idempotency_key)


def lock_team(session: Session, team_id: uuid.UUID) -> None:
    """Serialise this team's submits and claims until commit (PostgreSQL): quotas hold under
    races."""
    session.execute(select(Team.id).where(Team.id == team_id).with_for_update())


# -- submitting and reading jobs -------------------------------------------------------------


class IdempotencyConflict(Exception):
    """An ``Idempotency-Key`` reused with a different spec."""

    def __init__(self, job: Job):
        super().__init__(f"Idempotency-Key already used for job {job.id} with another spec")
        self.job = job


def _event(session: Session, job_id: uuid.UUID, old: str | None, new: str, attempt: int,
           **detail: Any) -> None:  # fmt: skip
    session.add(
        JobEvent(
            job_id=job_id, from_status=old, to_status=new, attempt=attempt, detail=detail or None
        )
    )


def create_job(
    session: Session,
    team_id: uuid.UUID,
    spec: JobSpec,
    *,
    idempotency_key: str | None = None,
    max_attempts: int = 3,
) -> tuple[Job, bool]:
    """Insert a queued job; with an idempotency key already used, return that job instead.

    Returns:
        ``(job, created)``. The caller commits, then enqueues when ``created``.

    Raises:
        IdempotencyConflict: the key was used with a different spec.
    """
    data = spec.model_dump(mode="json")
    if idempotency_key is not None:
        existing = _by_idempotency(session, team_id, idempotency_key)
        if existing is not None:
            return _same_spec(existing, data), False
    now = utcnow()
    job = Job(
        id=uuid.uuid4(),
        team_id=team_id,
        name=spec.name,
        spec=data,
        queue=spec.queue_kind,
        status="queued",
        idempotency_key=idempotency_key,
        max_attempts=max_attempts,
        iterations=spec.outer.iterations,
        created_at=now,
        enqueued_at=now,
        updated_at=now,
    )
    try:
        with session.begin_nested():
            session.add(job)
            session.flush()
    except IntegrityError:
        # a concurrent submit with the same key won the race
        existing = _by_idempotency(session, team_id, idempotency_key or "")
        if existing is None:
            raise
        return _same_spec(existing, data), False
    _event(session, job.id, None, "queued", 0)
    return job, True


def _by_idempotency(session: Session, team_id: uuid.UUID, key: str) -> Job | None:
    return session.scalar(select(Job).where(Job.team_id == team_id, Job.idempotency_key == key))


def _same_spec(job: Job, data: dict[str, Any]) -> Job:
    if job.spec != data:
        raise IdempotencyConflict(job)
    return job


def get_job(session: Session, team_id: uuid.UUID | None, job_id: uuid.UUID) -> Job | None:
    """The job, or ``None`` when unknown or (with ``team_id``) another team's."""
    job = session.get(Job, job_id, populate_existing=True)
    if job is None or (team_id is not None and job.team_id != team_id):
        return None
    return job


def encode_cursor(job: Job) -> str:
    raw = f"{job.created_at.isoformat()}|{job.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """Raises ``ValueError`` on a malformed cursor."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, _, jid = raw.partition("|")
        return datetime.fromisoformat(at), uuid.UUID(jid)
    except Exception as exc:
        raise ValueError(f"malformed cursor {cursor!r}") from exc


def list_jobs(
    session: Session,
    team_id: uuid.UUID,
    *,
    status: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[Job], str | None]:
    """A page of the team's jobs, newest first, and the cursor of the next page (or None)."""
    q = select(Job).where(Job.team_id == team_id)
    if status is not None:
        q = q.where(Job.status == status)
    if cursor is not None:
        at, jid = decode_cursor(cursor)
        q = q.where(or_(Job.created_at < at, and_(Job.created_at == at, Job.id < jid)))
    rows = list(session.scalars(q.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (encode_cursor(rows[-1]) if more and rows else None)


def cancel_job(session: Session, job: Job) -> Job:
    """Cancel a queued job at once; ask a running one to stop (the worker ends it)."""
    if job.status == "queued":
        res = session.execute(
            update(Job)
            .where(Job.id == job.id, Job.status == "queued")
            .values(status="cancelled", finished_at=utcnow(), updated_at=utcnow())
        )
        if res.rowcount == 1:
            _event(session, job.id, "queued", "cancelled", job.attempts)
            session.flush()
            return get_job(session, None, job.id) or job
    session.execute(
        update(Job)
        .where(Job.id == job.id, Job.status.in_(("queued", "running")))
        .values(cancel_requested=True, updated_at=utcnow())
    )
    session.flush()
    return get_job(session, None, job.id) or job


# -- the worker's side -----------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """What a worker holds while it runs a job: ``attempt`` fences every later write."""

    job_id: uuid.UUID
    attempt: int
    worker: str


def claim_job(session: Session, job_id: uuid.UUID, worker: str, lease_s: float) -> Claim | None:
    """Move a queued job to running; ``None`` if it is not queued (duplicate delivery)."""
    now = utcnow()
    row = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "queued", Job.cancel_requested.is_(False))
        .values(
            status="running",
            attempts=Job.attempts + 1,
            worker=worker,
            lease_until=now + timedelta(seconds=lease_s),
            started_at=func.coalesce(Job.started_at, now),
            updated_at=now,
        )
        .returning(Job.attempts)
    ).first()
    if row is None:
        _cancel_if_requested(session, job_id)
        return None
    _event(session, job_id, "queued", "running", row.attempts, worker=worker)
    return Claim(job_id=job_id, attempt=row.attempts, worker=worker)


def at_running_limit(session: Session, job_id: uuid.UUID, limit: int) -> bool:
    """Whether the team owning ``job_id`` already runs ``limit`` jobs (the claim's fair share).

    Call it in the transaction that then claims: on PostgreSQL it locks the team's row until
    commit, so that two workers claiming jobs of one team at once cannot both pass the check.
    """
    team_id, running = _team_running(session, job_id, lock=True)
    return team_id is not None and running >= limit


def next_queued_of_team(session: Session, job_id: uuid.UUID, limit: int) -> Job | None:
    """The oldest queued job of ``job_id``'s team, if the team runs fewer than ``limit``.

    A worker asks after one of the team's jobs stops: jobs it left queued at the limit have no
    message in the broker any more, and this is the one to send next.
    """
    team_id, running = _team_running(session, job_id)
    if team_id is None or running >= limit:
        return None
    return session.scalar(
        select(Job)
        .where(Job.team_id == team_id, Job.status == "queued")
        .order_by(Job.created_at, Job.id)
        .limit(1)
    )


def _team_running(
    session: Session, job_id: uuid.UUID, lock: bool = False
) -> tuple[uuid.UUID | None, int]:
    """``(team id, its running jobs)`` of ``job_id``'s team, locking the team row if asked."""
    team_id = session.scalar(select(Job.team_id).where(Job.id == job_id))
    if team_id is None:
        return None, 0
    if lock:
        lock_team(session, team_id)
    running = session.scalar(
        select(func.count()).where(Job.team_id == team_id, Job.status == "running")
    )
    return team_id, int(running or 0)


def _cancel_if_requested(session: Session, job_id: uuid.UUID) -> None:
    res = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "queued", Job.cancel_requested.is_(True))
        .values(status="cancelled", finished_at=utcnow(), updated_at=utcnow())
        .returning(Job.attempts)
    ).first()
    if res is not None:
        _event(session, job_id, "queued", "cancelled", res.attempts)


def _fenced(claim: Claim):
    return and_(Job.id == claim.job_id, Job.status == "running", Job.attempts == claim.attempt)


def heartbeat(
    session: Session,
    claim: Claim,
    lease_s: float,
    *,
    iteration: int | None = None,
    eta_s: float | None = None,
    summary: dict[str, Any] | None = None,
) -> str:
    """Renew the lease and record progress.

    Returns:
        ``"ok"``, ``"cancel"`` (the job should stop) or ``"lost"`` (the lease was taken away:
        write nothing more).
    """
    values: dict[str, Any] = {"lease_until": utcnow() + timedelta(seconds=lease_s)}
    if iteration is not None:
        values.update(iteration=iteration, eta_s=eta_s, updated_at=utcnow())
    if summary is not None:
        values["summary"] = summary
    row = session.execute(
        update(Job).where(_fenced(claim)).values(**values).returning(Job.cancel_requested)
    ).first()
    if row is None:
        return "lost"
    return "cancel" if row.cancel_requested else "ok"


def _clean(v: Any) -> float | None:
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


# PostgreSQL: one INSERT of one array per column, unnest zipping them back into rows. The
# statement costs about the same for 10 points as for 10,000, where a multi-row VALUES binds
# nine parameters per point and spends tens of microseconds of Python on each; and ``%b``
# sends the arrays in binary, without formatting every number as text. The trace is written
# in the training job's process, so that time is the job's.
_PG_INSERT_TRACE = (
    f"INSERT INTO {TracePoint.__tablename__} (job_id, iteration, {', '.join(TRACE_FIELDS)}) "
    "SELECT %(job_id)s, * FROM unnest(%(iteration)b::integer[], "
    + ", ".join(f"%({f})b::double precision[]" for f in TRACE_FIELDS)
    + ") ON CONFLICT (job_id, iteration) DO NOTHING"
)


def write_trace(session: Session, job_id: uuid.UUID, records: Sequence[Mapping[str, Any]]) -> None:
    """Insert a batch of ``core.fit`` records; NaN and infinity become NULL.

    The batch's ``trace_blocks`` rows are computed from the records in hand and merged with
    the rows already stored (:func:`_merge_blocks`); no point is read back. Writing a point
    again (a retried commit that did land) changes nothing; writing it with other values is
    not supported (the runner truncates the trace before it resumes).
    """
    if not records:
        return
    its = [int(r["iteration"]) for r in records]
    cols = {f: [_clean(r.get(f)) for r in records] for f in TRACE_FIELDS}
    # a retried commit that did land must not fail on its own rows
    if _store_dialect(session) == "postgresql":
        params = {"job_id": job_id, "iteration": its, **cols}
        session.connection().exec_driver_sql(_PG_INSERT_TRACE, params)  # psycopg's own syntax
    else:
        names = ("iteration", *TRACE_FIELDS)
        rows = [{"job_id": job_id, **dict(zip(names, v))} for v in zip(its, *cols.values())]
        stmt = sqlite_insert(TracePoint).on_conflict_do_nothing(
            index_elements=["job_id", "iteration"]
        )
        session.execute(stmt, rows)
    _merge_blocks(session, _rollup(job_id, its, cols))


def truncate_trace(session: Session, job_id: uuid.UUID, after: int) -> int:
    """Delete trace points past ``after`` (a resumed run writes them again, identically)."""
    res = session.execute(
        delete(TracePoint).where(TracePoint.job_id == job_id, TracePoint.iteration > after)
    )
    keep = (after - 1) // TRACE_BLOCK if after > 0 else -1
    session.execute(
        delete(trace_blocks).where(trace_blocks.c.job_id == job_id, trace_blocks.c.block > keep)
    )
    if after > 0:
        _refresh_blocks(session, job_id, after, after)  # now partial
    return res.rowcount


def _block_of(iteration: int) -> int:
    return (iteration - 1) // TRACE_BLOCK


def _extreme(row: dict[str, Any], f: str, pairs: list[tuple[float, int]]) -> None:
    """Set ``row``'s min and max of ``f`` from ``(value, iteration)`` pairs.

    Ties keep the earliest iteration, so the result does not depend on how the points were
    split into batches.
    """
    if not pairs:
        return
    row[f"{f}_min"], row[f"{f}_min_it"] = min(pairs)
    hi = max(v for v, _ in pairs)
    row[f"{f}_max"], row[f"{f}_max_it"] = hi, min(it for v, it in pairs if v == hi)


def _rollup(
    job_id: uuid.UUID, its: Sequence[int], cols: Mapping[str, Sequence[float | None]]
) -> dict[int, dict[str, Any]]:
    """trace_blocks rows of these points alone (every column; None where no value), by block."""
    members: dict[int, list[int]] = {}
    for k, it in enumerate(its):
        members.setdefault(_block_of(it), []).append(k)
    blocks = {}
    for b, ks in members.items():
        row: dict[str, Any] = {**dict.fromkeys(_BLOCK_COLUMNS), "job_id": job_id, "block": b}
        for f, col in cols.items():
            _extreme(row, f, [(col[k], its[k]) for k in ks if col[k] is not None])
        blocks[b] = row
    return blocks


def _upsert_blocks(insert_: Any) -> Any:
    """``INSERT INTO trace_blocks ... ON CONFLICT DO UPDATE`` merging the two rows' extremes."""
    ins = insert_(trace_blocks)
    new, old = ins.excluded, trace_blocks.c
    merged = {}
    for f in TRACE_FIELDS:
        for part, better in (("min", operator.lt), ("max", operator.gt)):
            v, it = f"{f}_{part}", f"{f}_{part}_it"
            # the batch's extreme wins when it is more extreme, or as extreme and earlier
            # (ties keep the earliest iteration); NULL (no value) never wins over a value
            wins = or_(
                old[v].is_(None),
                better(new[v], old[v]),
                and_(new[v] == old[v], new[it] < old[it]),
            )
            merged[v] = case((wins, new[v]), else_=old[v])
            merged[it] = case((wins, new[it]), else_=old[it])
    return ins.on_conflict_do_update(index_elements=["job_id", "block"], set_=merged)


# built once: a statement this size costs more to build and hash than to run
_UPSERT_BLOCKS = {"postgresql": _upsert_blocks(pg_insert), "sqlite": _upsert_blocks(sqlite_insert)}
_BLOCK_COLUMNS = tuple(c.name for c in trace_blocks.c)


def _store_dialect(session: Session) -> str:
    """``"postgresql"`` or ``"sqlite"``, the two stores the service runs on (``jobs.db``)."""
    name = session.get_bind().dialect.name
    if name not in _UPSERT_BLOCKS:
        raise ValueError(f"the job store must be PostgreSQL or SQLite, got {name}")
    return name


def _merge_blocks(session: Session, blocks: dict[int, dict[str, Any]]) -> None:
    """Store ``blocks``, each merged on conflict with the stored row of the same block.

    Extremes of a union are extremes of the parts' extremes, so the block a batch starts in
    (its head already stored) comes out as if recomputed from all its points, and a batch
    written twice leaves its blocks as they were. One statement: nothing is read back.
    """
    if blocks:
        session.execute(_UPSERT_BLOCKS[_store_dialect(session)], list(blocks.values()))


def _refresh_blocks(session: Session, job_id: uuid.UUID, lo: int, hi: int) -> None:
    """Recompute the trace_blocks rows covering iterations ``lo..hi`` from trace_points."""
    b0, b1 = _block_of(lo), _block_of(hi)
    cols = [TracePoint.iteration, *(getattr(TracePoint, f) for f in TRACE_FIELDS)]
    points = session.execute(
        select(*cols).where(
            TracePoint.job_id == job_id,
            TracePoint.iteration.between(b0 * TRACE_BLOCK + 1, (b1 + 1) * TRACE_BLOCK),
        )
    ).all()
    session.execute(
        delete(trace_blocks).where(
            trace_blocks.c.job_id == job_id, trace_blocks.c.block.between(b0, b1)
        )
    )
    its = [p[0] for p in points]
    by_field = {f: [p[i] for p in points] for i, f in enumerate(TRACE_FIELDS, start=1)}
    _merge_blocks(session, _rollup(job_id, its, by_field))


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
    return session.get(Artifact, (job_id, kind), populate_existing=True)


def finish_job(
    session: Session,
    claim: Claim,
    status: str,
    *,
    summary: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    iteration: int | None = None,
) -> bool:
    """End a running job held by ``claim``; ``False`` if the lease was lost meanwhile."""
    if status not in TERMINAL and status != "queued":
        raise ValueError(f"status must be terminal or 'queued', got {status!r}")
    now = utcnow()
    values: dict[str, Any] = {"status": status, "updated_at": now, "lease_until": None}
    if status in TERMINAL:
        values.update(finished_at=now, eta_s=0.0 if status == "succeeded" else None)
    if summary is not None:
        values["summary"] = summary
    if error is not None:
        values["error"] = error
    if iteration is not None:
        values["iteration"] = iteration
    res = session.execute(update(Job).where(_fenced(claim)).values(**values))
    if res.rowcount != 1:
        return False
    _event(session, claim.job_id, "running", status, claim.attempt, **(error or {}))
    return True


def release_job(session: Session, claim: Claim) -> bool:
    """Put a running job back in the queue (its worker is shutting down).

    The attempt it used is given back (``max_attempts`` grows by one): a preemption is not
    a failure. ``False`` if the lease was lost meanwhile.
    """
    now = utcnow()
    res = session.execute(
        update(Job)
        .where(_fenced(claim))
        .values(
            status="queued",
            lease_until=None,
            worker=None,
            enqueued_at=now,
            updated_at=now,
            max_attempts=Job.max_attempts + 1,
        )
    )
    if res.rowcount != 1:
        return False
    _event(session, claim.job_id, "running", "queued", claim.attempt, reason="preempted")
    return True


def reap(
    session: Session,
    *,
    requeue_queued_after_s: float | None = None,
    stale_queues: Iterable[str] | None = None,
    expire_leases: bool = True,
) -> list[Job]:
    """Requeue running jobs whose lease expired (failing those out of attempts).

    With ``requeue_queued_after_s``, also return queued jobs enqueued longer ago than that,
    so that a message lost by the broker is sent again (a duplicate claims nothing);
    ``stale_queues`` limits that to the queue kinds whose broker queue is empty (a backlog
    is not a loss). ``expire_leases=False`` skips the expired leases (just after a store
    outage, when no heartbeat could renew them).

    Returns:
        The jobs to (re)enqueue; the caller commits first, then sends them.
    """
    now = utcnow()
    expired = (
        list(
            session.scalars(
                select(Job)
                .where(Job.status == "running", Job.lease_until < now)
                .with_for_update(skip_locked=True)
            )
        )
        if expire_leases
        else []
    )
    out = []
    for job in expired:
        if job.attempts >= job.max_attempts:
            error = {
                "type": "LeaseExpired",
                "detail": f"worker lost {job.attempts} times (max_attempts={job.max_attempts})",
            }
            new = "failed"
        else:
            error, new = None, "queued"
        res = session.execute(
            update(Job)
            .where(Job.id == job.id, Job.status == "running", Job.attempts == job.attempts)
            .values(
                status=new,
                lease_until=None,
                worker=None,
                updated_at=now,
                enqueued_at=now,
                error=error,
                finished_at=now if new == "failed" else None,
            )
        )
        if res.rowcount == 1:
            _event(session, job.id, "running", new, job.attempts, reason="lease expired")
            if new == "queued":
                out.append(job)
    if requeue_queued_after_s is not None:
        stale = now - timedelta(seconds=requeue_queued_after_s)
        q = select(Job).where(Job.status == "queued", Job.enqueued_at < stale)
        if stale_queues is not None:
            q = q.where(Job.queue.in_(list(stale_queues)))
        for job in session.scalars(q):
            job.enqueued_at = now
            out.append(job)
    session.flush()
    return out


# -- traces ----------------------------------------------------------------------------------


def trace_version(session: Session, job_id: uuid.UUID, after: int) -> tuple[int, int]:
    """``(count, last iteration)`` of the points past ``after``: what an ETag hashes."""
    n, _, last = trace_span(session, job_id, after)
    return n, last


def trace_span(session: Session, job_id: uuid.UUID, after: int) -> tuple[int, int, int]:
    """``(points, first, last)`` past ``after`` from two index probes, no count scan.

    The runner writes every iteration from 1 on and truncates before resuming, so a trace
    is contiguous and ``last - first + 1`` is its size.
    """
    first, last = session.execute(
        select(func.min(TracePoint.iteration), func.max(TracePoint.iteration)).where(
            TracePoint.job_id == job_id, TracePoint.iteration > after
        )
    ).one()
    if first is None:
        return 0, 0, 0
    return int(last) - int(first) + 1, int(first), int(last)


def trace_columns(
    session: Session,
    job_id: uuid.UUID,
    *,
    after: int = 0,
    max_points: int | None = None,
    fields: Iterable[str] = TRACE_FIELDS,
    span: tuple[int, int, int] | None = None,
) -> dict[str, list]:
    """Columnar trace past ``after``, downsampled to at most ``max_points`` rows.

    Downsampling splits the iterations into equal buckets and keeps, in each bucket, the rows
    holding the minimum and the maximum of every requested field (plus the first and last
    rows), so spikes and the best loss survive; there are about
    ``max_points / (2 * len(fields))`` buckets. A long trace takes its extremes from
    ``trace_blocks`` (one row per 64 iterations, kept by :func:`write_trace`), a short one
    from a grouped scan of the points; only the chosen rows are then read.

    ``span`` is :func:`trace_span`'s answer when the caller has it (an ETag hashed it): the
    rows are those it counted, never points committed since.
    """
    fields = [f for f in fields if f != "iteration"]
    cols = [TracePoint.iteration, *(getattr(TracePoint, f) for f in fields)]
    where = and_(TracePoint.job_id == job_id, TracePoint.iteration > after)
    n, first, last = span or trace_span(session, job_id, after)
    if n == 0:
        return {"iteration": [], **{f: [] for f in fields}}
    q = select(*cols).where(where, TracePoint.iteration <= last).order_by(TracePoint.iteration)
    if max_points is not None and n > max_points:
        keep = sorted(_extremes(session, job_id, where, fields, max_points, first, last))
        if session.get_bind().dialect.name == "postgresql":
            # one array parameter: a long IN list costs more to compile and plan than to run
            its = bindparam("its", keep, type_=PG_ARRAY(Integer))
            only = select(*cols).where(
                TracePoint.job_id == job_id, TracePoint.iteration == any_(its)
            )
            rows = session.execute(only.order_by(TracePoint.iteration)).all()
        else:
            # bound parameters are limited (SQLite: 32766): chunk the list
            rows = []
            for i in range(0, len(keep), 5000):
                chunk = keep[i : i + 5000]
                rows += session.execute(q.where(TracePoint.iteration.in_(chunk))).all()
    else:
        rows = session.execute(q).all()
    out: dict[str, list] = {"iteration": [r[0] for r in rows]}
    for i, f in enumerate(fields, start=1):
        out[f] = [r[i] for r in rows]
    return out


def _extremes_from_blocks(
    session, job_id, where, fields, max_points, first, last
) -> set[int] | None:
    """Per-bucket extremes from trace_blocks, or ``None`` when the trace is too short.

    Buckets are whole blocks; the partial block ``first`` may start in contributes its own
    extremes from trace_points. Minima over blocks are minima over points, so the kept
    points are the same kind of extremes as the row-level path keeps.
    """
    nf = len(fields)
    buckets = (max_points - 2 - 2 * nf) // (2 * nf)
    head_end = min(last, (_block_of(first) + 1) * TRACE_BLOCK)
    b0 = _block_of(first) if (first - 1) % TRACE_BLOCK == 0 else _block_of(first) + 1
    b1 = _block_of(last)
    nblocks = b1 - b0 + 1
    if buckets < 1 or nblocks < 2 * buckets:
        return None
    keep: set[int] = set()
    if b0 > _block_of(first):  # the head: first .. end of its block, from the points
        cols = [TracePoint.iteration, *(getattr(TracePoint, f) for f in fields)]
        head = session.execute(select(*cols).where(where, TracePoint.iteration <= head_end)).all()
        for i in range(1, nf + 1):
            vals = [(r[i], r[0]) for r in head if r[i] is not None]
            if vals:
                keep.add(min(vals)[1])
                keep.add(min(vals, key=lambda x: (-x[0], x[1]))[1])
    names = [f"{f}_{part}" for f in fields for part in ("min", "min_it", "max", "max_it")]
    rows = session.execute(
        select(trace_blocks.c.block, *(trace_blocks.c[n] for n in names)).where(
            trace_blocks.c.job_id == job_id, trace_blocks.c.block.between(b0, b1)
        )
    ).all()
    best: dict[tuple[int, int, str], tuple[float, int]] = {}
    for r in rows:
        bucket = (r[0] - b0) * buckets // nblocks
        for j in range(nf):
            lo, lo_it, hi, hi_it = r[1 + 4 * j : 5 + 4 * j]
            if lo is None:
                continue
            k = (bucket, j, "min")
            if k not in best or (lo, lo_it) < best[k]:
                best[k] = (lo, lo_it)
            k = (bucket, j, "max")
            if k not in best or (-hi, hi_it) < (-best[k][0], best[k][1]):
                best[k] = (hi, hi_it)
    keep.update(it for _, it in best.values())
    return keep


def _extremes(session, job_id, where, fields, max_points, first, last) -> set[int]:
    """Iterations of the per-bucket minima and maxima of ``fields``."""
    keep = {first, last}
    if max_points < 3:
        return set(list(sorted(keep))[:max_points])
    span = last - first + 1
    if not fields:
        step = span / (max_points - 2)
        return keep | {first + int(i * step) for i in range(max_points - 2)}
    fields = fields[: max(1, (max_points - 2) // 2)]  # very small budgets: fewer fields
    rolled = _extremes_from_blocks(session, job_id, where, fields, max_points, first, last)
    if rolled is not None:
        return keep | rolled
    buckets = max(1, (max_points - 2) // (2 * len(fields)))
    it = TracePoint.iteration
    # integers we computed, inlined: PostgreSQL then sees one GROUP BY expression
    bucket = ((it - literal(first, literal_execute=True)) * literal(buckets, literal_execute=True)
              // literal(span, literal_execute=True)).label("bucket")  # fmt: skip
    if session.get_bind().dialect.name == "postgresql":
        # min/max over ARRAY[value, iteration] is an argmin/argmax in one hash aggregate
        aggs = []
        for f in fields:
            col = getattr(TracePoint, f)
            pair = pg_array([col, sa_cast(it, Double)])
            for agg in (func.min, func.max):
                aggs.append(agg(pair).filter(col.is_not(None)))
        for row in session.execute(select(bucket, *aggs).where(where).group_by(bucket)):
            keep.update(int(p[1]) for p in row[1:] if p is not None)
    else:
        # SQLite returns the row that holds a lone min()/max() for bare columns
        for f in fields:
            col = getattr(TracePoint, f)
            for agg in (func.min, func.max):
                q = select(it, agg(col)).where(where, col.is_not(None)).group_by(bucket)
                keep.update(int(r[0]) for r in session.execute(q))
    if len(keep) > max_points:  # only when max_points < 6: keep the ends, thin the middle
        ordered = sorted(keep)
        step = (len(ordered) - 1) / (max_points - 1)
        keep = {ordered[round(i * step)] for i in range(max_points)}
    return keep
