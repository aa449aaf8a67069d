"""A running job's flushes in one call each: the heartbeat with its trace batch, and the finish.

A worker's every trace flush renews the lease in the same transaction (``worker.trace_writer``),
and its last one ends the job. As separate calls (:func:`~jobs.store.repo.lifecycle.heartbeat`,
:func:`~jobs.store.repo.trace_writes.write_trace`, :func:`~jobs.store.repo.lifecycle.finish_job`)
that is three or four statements and an ORM flush, ~2.4 ms of CPU each on this machine
(``benchmarks.service.cycle_cpu``); with a claim every job, several flushes per job bounded
the pool's claims per second on 2 cores. On PostgreSQL each is here one call of migration
0021's ``bilevel_beat`` / ``bilevel_finish``.

Both are fenced first, as the worker always did (heartbeat, then write): a stale attempt or
a lost lease changes nothing and writes no point. :func:`_beat_reference` and
:func:`_finish_reference` are the same steps through the Python functions: the embedded
SQLite store runs them, and ``tests/jobs/test_job_cycle.py`` holds the SQL to them (rows,
events, rollups, refusals).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy import Row
from sqlalchemy.orm import Session

from jobs.status import TERMINAL, JobStatus
from jobs.store.base import naive_utc
from jobs.store.models import TRACE_FIELDS, utcnow
from jobs.store.repo.lifecycle import Claim, LeaseState, check_end_status, finish_job, heartbeat
from jobs.store.repo.trace_writes import trace_columns_of, write_trace

__all__ = ["finish_with_trace", "heartbeat_with_trace"]

_ARRAYS = ", ".join(f"%({f})b::float8[]" for f in TRACE_FIELDS)
# psycopg's own syntax (binary arrays, as write_trace sends them); casts: psycopg sends a
# Python int as the smallest integer type that holds it, the functions want their own
_BEAT = (
    "SELECT cancel_requested, preempt_requested FROM bilevel_beat(%(job)s, %(attempt)s::integer,"
    " %(lease_until)s::timestamp, %(now)s::timestamp, %(progress)s, %(iteration)s::integer,"
    " %(eta_s)s::float8, %(summary)s::jsonb, %(its)b::integer[], " + _ARRAYS + ")"
)
_FINISH = (
    "SELECT bilevel_finish(%(job)s, %(attempt)s::integer, %(status)s::text, %(now)s::timestamp,"
    " %(terminal)s, %(eta_s)s::float8, %(summary)s::jsonb, %(error)s::jsonb,"
    " %(iteration)s::integer, %(detail)s::jsonb, %(its)b::integer[], " + _ARRAYS + ")"
)


def _json(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value)


def _batch(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    its, cols = trace_columns_of(records)
    return {"its": its, **cols}


def _pg(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _call(session: Session, sql: str, params: dict[str, Any]) -> Row[Any]:
    """One function call in psycopg's syntax, after the session's pending changes.

    ``Session.execute`` would autoflush them; a driver call does not, and the function must
    see the rows they make.
    """
    session.flush()
    return session.connection().exec_driver_sql(sql, params).one()


def heartbeat_with_trace(
    session: Session,
    claim: Claim,
    lease_s: float,
    records: Sequence[Mapping[str, Any]],
    *,
    iteration: int | None = None,
    eta_s: float | None = None,
    summary: dict[str, Any] | None = None,
) -> LeaseState:
    """:func:`~jobs.store.repo.lifecycle.heartbeat`, then ``records`` written unless ``LOST``."""
    if not _pg(session):
        return _beat_reference(session, claim, lease_s, records, iteration=iteration,
                               eta_s=eta_s, summary=summary)  # fmt: skip
    now = utcnow()
    row = _call(session, _BEAT, {
        "job": claim.job_id, "attempt": claim.attempt,
        "lease_until": naive_utc(now + timedelta(seconds=lease_s)), "now": naive_utc(now),
        "progress": iteration is not None, "iteration": iteration,
        "eta_s": eta_s, "summary": _json(summary),
        **_batch(records),
    })  # fmt: skip
    if row.cancel_requested is None:
        return LeaseState.LOST
    if row.cancel_requested:
        return LeaseState.CANCEL
    return LeaseState.PREEMPT if row.preempt_requested else LeaseState.OK


def finish_with_trace(
    session: Session,
    claim: Claim,
    status: str,
    records: Sequence[Mapping[str, Any]],
    *,
    summary: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    iteration: int | None = None,
) -> bool:
    """:func:`~jobs.store.repo.lifecycle.finish_job`, then ``records`` written unless refused."""
    check_end_status(status)
    if not _pg(session):
        return _finish_reference(session, claim, status, records, summary=summary, error=error,
                                 iteration=iteration)  # fmt: skip
    terminal = status in TERMINAL
    ok = _call(session, _FINISH, {
        "job": claim.job_id, "attempt": claim.attempt, "status": str(status),
        "now": naive_utc(utcnow()), "terminal": terminal,
        "eta_s": 0.0 if status == JobStatus.SUCCEEDED else None,
        "summary": _json(summary), "error": _json(error), "iteration": iteration,
        "detail": _json(error or None), **_batch(records),
    })[0]  # fmt: skip
    return bool(ok)


def _beat_reference(
    session: Session,
    claim: Claim,
    lease_s: float,
    records: Sequence[Mapping[str, Any]],
    **progress: Any,
) -> LeaseState:
    """:func:`heartbeat_with_trace` as Python calls: the SQLite path, and the tests' reference."""
    state = heartbeat(session, claim, lease_s, **progress)
    if state is not LeaseState.LOST:
        write_trace(session, claim.job_id, records)
    return state


def _finish_reference(
    session: Session,
    claim: Claim,
    status: str,
    records: Sequence[Mapping[str, Any]],
    **values: Any,
) -> bool:
    """:func:`finish_with_trace` as Python calls: the SQLite path, and the tests' reference."""
    if not finish_job(session, claim, status, **values):
        return False
    write_trace(session, claim.job_id, records)
    return True
