"""The job cycle's server-side functions (migration 0021) against the Python calls they replace.

``heartbeat_with_trace`` and ``finish_with_trace`` run ``bilevel_beat`` / ``bilevel_finish`` on
PostgreSQL; ``job_cycle._beat_reference`` / ``_finish_reference`` are the same steps through
``heartbeat``, ``write_trace`` and ``finish_job`` (the SQLite path). The same script of
flushes through each must leave the same rows (job, events, points, rollups) and give the
same answers, refusals of a stale attempt included, or the SQL would drift from the rule.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select, update

from jobs.specs.job import parse_spec
from jobs.status import JobStatus
from jobs.store import repo
from jobs.store.models import TRACE_FIELDS, Job, JobEvent, TracePoint, trace_blocks
from jobs.store.repo import job_cycle
from tests.factories import tiny_spec

LEASE_S = 30.0
PATHS = {
    "sql": (repo.heartbeat_with_trace, repo.finish_with_trace),
    "python": (job_cycle._beat_reference, job_cycle._finish_reference),
}
_WHEN = ("lease_until", "updated_at", "finished_at", "started_at", "running_since")


def _records(its: list[int], rng: random.Random) -> list[dict[str, Any]]:
    """Points with ties, NaN, infinities and missing fields, so every rollup rule is hit."""
    pick = [1.0, 2.0, 0.5, -1.0, math.nan, math.inf, -math.inf, None, 1e-300]
    out = []
    for it in its:
        rec: dict[str, Any] = {"iteration": it}
        for f in TRACE_FIELDS:
            v = rng.choice(pick)
            if v is not None or rng.random() < 0.5:
                rec[f] = v
        out.append(rec)
    return out


def _new_claim(sessions: Any, name: str) -> repo.Claim:
    with sessions.begin() as s:
        team = repo.ensure_team(s, f"cycle-{name}").id
        job = repo.create_job(s, team, parse_spec(tiny_spec(iterations=400)))[0]
        claim = repo.claim_job(s, job.id, "w-cycle", LEASE_S)
    assert claim is not None
    return claim


def _rows(sessions: Any, job_id: uuid.UUID) -> dict[str, Any]:
    """Everything the cycle writes about a job; timestamps as set or not (they differ by run)."""
    with sessions() as s:
        job = s.get(Job, job_id)
        assert job is not None
        events = s.execute(
            select(JobEvent.from_status, JobEvent.to_status, JobEvent.attempt, JobEvent.detail)
            .where(JobEvent.job_id == job_id)
            .order_by(JobEvent.id)
        ).all()
        points = s.execute(
            select(TracePoint.iteration, *(getattr(TracePoint, f) for f in TRACE_FIELDS))
            .where(TracePoint.job_id == job_id)
            .order_by(TracePoint.iteration)
        ).all()
        blocks = s.execute(
            select(*[c for c in trace_blocks.c if c.name != "job_id"])
            .where(trace_blocks.c.job_id == job_id)
            .order_by(trace_blocks.c.block)
        ).all()
        fields = ("status", "attempts", "iteration", "eta_s", "summary", "error",
                  "cancel_requested", "preempt_requested", "worker")  # fmt: skip
        row = {f: getattr(job, f) for f in fields}
        row.update({f"{w} set": getattr(job, w) is not None for w in _WHEN})
    return {"job": row, "events": [tuple(e) for e in events],
            "points": [tuple(p) for p in points], "blocks": [tuple(b) for b in blocks]}  # fmt: skip


def _flag(sessions: Any, job_id: uuid.UUID, **flags: bool) -> None:
    with sessions.begin() as s:
        s.execute(update(Job).where(Job.id == job_id).values(**flags))


def _script(sessions: Any, path: str, seed: int) -> tuple[list[Any], dict[str, Any]]:
    """One job's flushes through ``path``: answers and the rows left."""
    beat, finish = PATHS[path]
    rng = random.Random(seed)
    claim = _new_claim(sessions, f"{path}-{seed}")
    answers: list[Any] = []

    def step(fn: Callable[..., Any], *args: Any, **kw: Any) -> None:
        with sessions.begin() as s:
            answers.append(fn(s, *args, **kw))

    it = 0
    for k in range(6):  # batches across block edges (64, 128), one written twice
        n = rng.choice([1, 10, 40, 70])
        its = list(range(it + 1, it + n + 1))
        recs = _records(its, rng)
        step(beat, claim, LEASE_S, recs, iteration=its[-1], eta_s=rng.random())
        if k == 2:
            step(beat, claim, LEASE_S, recs, iteration=its[-1], eta_s=1.0)  # a retried flush
        it = its[-1]
    step(beat, claim, LEASE_S, [])  # the lease alone: progress untouched
    step(beat, claim, LEASE_S, _records([it + 1], rng), iteration=it + 1, summary={"k": 1})
    _flag(sessions, claim.job_id, preempt_requested=True)
    step(beat, claim, LEASE_S, _records([it + 2], rng), iteration=it + 2, eta_s=None)
    _flag(sessions, claim.job_id, cancel_requested=True)
    step(beat, claim, LEASE_S, _records([it + 3, it + 3], rng), iteration=it + 3)
    stale = repo.Claim(claim.job_id, claim.attempt - 1, claim.worker)  # an earlier attempt
    step(beat, stale, LEASE_S, _records([it + 4], rng), iteration=it + 4)
    step(finish, stale, JobStatus.FAILED, _records([it + 5], rng), error={"type": "X"})
    end = {"summary": {"final": 2.0}, "error": {"type": "Stop", "detail": "x"}, "iteration": it + 7}
    step(finish, claim, JobStatus.CANCELLED, _records([it + 6, it + 7], rng), **end)
    step(beat, claim, LEASE_S, _records([it + 8], rng), iteration=it + 8)  # after the end
    step(finish, claim, JobStatus.SUCCEEDED, _records([it + 9], rng))
    return answers, _rows(sessions, claim.job_id)


@pytest.mark.parametrize("seed", range(6))
def test_the_sql_cycle_leaves_the_rows_and_answers_of_the_python_calls(pg_sessions, seed):
    sql_answers, sql_rows = _script(pg_sessions, "sql", seed)
    py_answers, py_rows = _script(pg_sessions, "python", seed)
    assert sql_answers == py_answers
    for part in ("job", "events", "points", "blocks"):
        assert sql_rows[part] == py_rows[part], part


def test_a_stale_attempt_or_an_ended_job_is_refused_and_writes_nothing(pg_sessions):
    claim = _new_claim(pg_sessions, "fence")
    stale = repo.Claim(claim.job_id, claim.attempt + 1, claim.worker)
    with pg_sessions.begin() as s:
        beat = repo.heartbeat_with_trace(s, stale, LEASE_S, [{"iteration": 1, "lr": 0.1}],
                                         iteration=1)  # fmt: skip
        ended = repo.finish_with_trace(s, stale, JobStatus.SUCCEEDED, [{"iteration": 2}])
    assert (beat, ended) == (repo.LeaseState.LOST, False)
    rows = _rows(pg_sessions, claim.job_id)
    assert (rows["points"], rows["blocks"], rows["job"]["iteration"]) == ([], [], 0)
    assert [e[1] for e in rows["events"]] == [JobStatus.QUEUED, JobStatus.RUNNING]
    with pg_sessions.begin() as s:
        assert repo.finish_with_trace(s, claim, JobStatus.SUCCEEDED, [{"iteration": 1}])
    with pg_sessions.begin() as s:  # the lease ended with the job
        got = repo.heartbeat_with_trace(s, claim, LEASE_S, [{"iteration": 2}], iteration=2)
        again = repo.finish_with_trace(s, claim, JobStatus.FAILED, [{"iteration": 3}])
    assert (got, again) == (repo.LeaseState.LOST, False)
    assert [p[0] for p in _rows(pg_sessions, claim.job_id)["points"]] == [1]


def test_a_status_that_does_not_end_a_run_is_refused_with_its_value(pg_sessions):
    claim = _new_claim(pg_sessions, "bad-status")
    with (
        pg_sessions.begin() as s,
        pytest.raises(ValueError, match=r"status must be terminal or queued, got .*running"),
    ):
        repo.finish_with_trace(s, claim, JobStatus.RUNNING, [])


def test_the_embedded_store_runs_the_python_calls(sqlite_sessions):
    claim = _new_claim(sqlite_sessions, "sqlite")
    with sqlite_sessions.begin() as s:
        state = repo.heartbeat_with_trace(s, claim, LEASE_S, [{"iteration": 1, "lr": 0.1}],
                                          iteration=1)  # fmt: skip
    with sqlite_sessions.begin() as s:
        done = repo.finish_with_trace(s, claim, JobStatus.SUCCEEDED, [{"iteration": 2}],
                                      iteration=2)  # fmt: skip
    rows = _rows(sqlite_sessions, claim.job_id)
    assert (state, done) == (repo.LeaseState.OK, True)
    assert [p[0] for p in rows["points"]] == [1, 2]
    assert (rows["job"]["status"], rows["job"]["iteration"]) == (JobStatus.SUCCEEDED, 2)
