"""The scale benchmark's store at size: teams with skewed weights, studies, a long trace history.

Rows are written in bulk, not through the API: jobs by ``executemany`` in batches, trace
points by one ``INSERT ... SELECT`` over ``generate_series`` per batch of jobs (the server
makes the rows; nothing crosses the wire per point), their ``trace_blocks`` rollups by one
grouped aggregate. What is measured afterwards (claims, pages) goes through the store's own
functions and the API.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import psycopg
from sqlalchemy import insert, text
from sqlalchemy.orm import Session, sessionmaker

import migrations
from jobs.status import JobStatus, QueueKind
from jobs.store import repo
from jobs.store.models import TRACE_BLOCK, Job, utcnow

_TICK = os.sysconf("SC_CLK_TCK")

__all__ = [
    "Plan",
    "Study",
    "backend_cpu_s",
    "insert_jobs",
    "loadavg",
    "make_plan",
    "make_teams",
    "measured",
    "per_call_ms",
    "preload_trace",
    "stamp",
    "throwaway_database",
    "trace_sizes",
]

TRACE_JOB_POINTS = 10_000  # points per historical job: 10M points are 1,000 finished jobs


@dataclass(frozen=True)
class Study:
    """A burst of jobs one team submits at once (a study's members)."""

    team: int
    size: int
    at_s: float  # seconds after the run starts that it arrives (<= 0: queued before)


@dataclass
class Plan:
    """What the run will see: team weights and the bursts, preloaded and live."""

    weights: list[float]
    preloaded: list[Study] = field(default_factory=list)
    live: list[Study] = field(default_factory=list)


def make_plan(teams: int, jobs: int, live_jobs: int, live_window_s: float, seed: int) -> Plan:
    """Zipf-like weights (``1 / rank**0.7``: the first team ~25x the last) and bursts.

    Each team's jobs are in proportion to its weight, so that every team stays backlogged
    for most of the run; they come as studies of 20-400 jobs. ``jobs`` are queued before
    the workers start, ``live_jobs`` more arrive in bursts during the first ``live_window_s``.
    """
    rng = random.Random(seed)
    weights = [round(1.0 / (rank + 1) ** 0.7, 4) for rank in range(teams)]
    plan = Plan(weights)
    for total, out, live in ((jobs, plan.preloaded, False), (live_jobs, plan.live, True)):
        wsum = sum(weights)
        for t, w in enumerate(weights):
            left = max(1, round(total * w / wsum)) if total else 0
            while left > 0:
                size = min(left, rng.randint(20, 400))
                at = rng.uniform(0, live_window_s) if live else -rng.uniform(0, 3600)
                out.append(Study(t, size, at))
                left -= size
    plan.live.sort(key=lambda s: s.at_s)
    return plan


def make_teams(sessions: sessionmaker[Session], weights: list[float]) -> list[uuid.UUID]:
    """One team per weight, ``scale-000`` .. (their limits left to the policy)."""
    ids = []
    with sessions.begin() as s:
        for i, w in enumerate(weights):
            team = repo.ensure_team(s, f"scale-{i:03d}")
            team.weight = w
            ids.append(team.id)
    return ids


def _job_row(team: uuid.UUID, spec: dict[str, Any], at: Any, n: int, **over: Any) -> dict[str, Any]:
    row = {
        "id": uuid.uuid4(), "team_id": team, "name": f"scale-{n}", "spec": spec,
        "queue": QueueKind.CPU, "status": JobStatus.QUEUED, "attempts": 0, "max_attempts": 3,
        "cancel_requested": False, "iteration": 0, "iterations": spec["outer"]["iterations"],
        "created_at": at, "enqueued_at": at, "updated_at": at, "priority": 1,
        "preempt_requested": False,
    }  # fmt: skip
    row.update(over)
    return row


def insert_jobs(
    sessions: sessionmaker[Session],
    teams: list[uuid.UUID],
    studies: list[Study],
    spec: dict[str, Any],
    *,
    batch: int = 5_000,
) -> int:
    """Queue the studies' jobs (one ``executemany`` per ``batch``); returns how many."""
    now, rows, n = utcnow(), [], 0
    for st in studies:
        at = now + timedelta(seconds=min(st.at_s, 0.0))
        for k in range(st.size):
            rows.append(_job_row(teams[st.team], spec, at + timedelta(microseconds=k), n))
            n += 1
    for i in range(0, len(rows), batch):
        with sessions.begin() as s:
            s.execute(insert(Job), rows[i : i + batch])
    return n


def preload_trace(
    sessions: sessionmaker[Session],
    teams: list[uuid.UUID],
    spec: dict[str, Any],
    points: int,
    *,
    per_job: int = TRACE_JOB_POINTS,
    jobs_per_statement: int = 20,
) -> list[uuid.UUID]:
    """Finished jobs holding ``points`` trace points in all (``per_job`` each), with rollups.

    The values are a decaying loss with noise and a constant step size, as ``core.fit``
    writes them; the rollups are each block's extremes with the earliest iteration among
    ties (``min(ARRAY[value, iteration])``), what the writer would have stored.
    """
    n_jobs = max(1, points // per_job) if points else 0
    done = utcnow() - timedelta(days=1)
    ids = []
    with sessions.begin() as s:
        rows = [
            _job_row(teams[k % len(teams)], spec, done, -k - 1, status=JobStatus.SUCCEEDED,
                     attempts=1, iteration=per_job, started_at=done, running_since=done,
                     finished_at=done, name=f"history-{k}")
            for k in range(n_jobs)
        ]  # fmt: skip
        if rows:
            s.execute(insert(Job), rows)
        ids = [r["id"] for r in rows]
    for i in range(0, len(ids), jobs_per_statement):
        chunk = ids[i : i + jobs_per_statement]
        with sessions.begin() as s:
            s.execute(_INSERT_POINTS, {"ids": chunk, "n": per_job})
            s.execute(_INSERT_BLOCKS, {"ids": chunk, "b": TRACE_BLOCK})
    return ids


_INSERT_POINTS = text("""
INSERT INTO trace_points (job_id, iteration, outer_loss, grad_norm, lr, time_s)
SELECT j, i, 1.0 / i + 0.01 * random(), 1.0 / sqrt(i) + 0.01 * random(), 0.01, 0.02 * i
FROM unnest(CAST(:ids AS uuid[])) AS j, generate_series(1, :n) AS i
""")

_BLOCK_FIELDS = ("outer_loss", "grad_norm", "lr", "time_s")
_BLOCK_COLS = ", ".join(f"{f}_min, {f}_min_it, {f}_max, {f}_max_it" for f in _BLOCK_FIELDS)
_BLOCK_PICK = ", ".join(
    f"m_{f}[1], m_{f}[2]::integer, x_{f}[1], (-x_{f}[2])::integer" for f in _BLOCK_FIELDS
)
_BLOCK_AGG = ", ".join(
    f"min(ARRAY[{f}, iteration]) AS m_{f}, max(ARRAY[{f}, -iteration]) AS x_{f}"
    for f in _BLOCK_FIELDS
)
_INSERT_BLOCKS = text(
    f"INSERT INTO trace_blocks (job_id, block, {_BLOCK_COLS}) SELECT job_id, b, {_BLOCK_PICK}"
    f" FROM (SELECT job_id, (iteration - 1) / :b AS b, {_BLOCK_AGG} FROM trace_points"
    " WHERE job_id = ANY(CAST(:ids AS uuid[])) GROUP BY 1, 2) AS r"
)


_SIZES = """
SELECT coalesce(sum(pg_relation_size(relid)), 0), coalesce(sum(pg_indexes_size(relid)), 0),
       coalesce(sum(pg_total_relation_size(relid) - pg_relation_size(relid)
                    - pg_indexes_size(relid)), 0)
FROM (SELECT CAST(:t AS regclass) AS relid
      UNION SELECT relid FROM pg_partition_tree(CAST(:t AS regclass))) AS tree
"""


def trace_sizes(session: Any) -> dict[str, Any]:
    """Heap, indexes and the rest (TOAST, free space and visibility maps) of the trace tables.

    Summed over ``trace_points``' partitions: ``pg_total_relation_size`` of a partitioned
    table is 0. ``bytes`` is the total.
    """
    out: dict[str, Any] = {}
    for t in ("trace_points", "trace_blocks"):
        heap, index, toast = session.execute(text(_SIZES), {"t": t}).one()
        out[t] = {"heap": int(heap), "indexes": int(index), "toast_fsm_vm": int(toast)}
    out["bytes"] = sum(sum(out[t].values()) for t in ("trace_points", "trace_blocks"))
    return out


@contextmanager
def throwaway_database(admin_url: str, prefix: str) -> Iterator[str]:
    """A new empty database beside ``admin_url``'s, its URL; dropped on the way out."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin_url.rpartition("/")[0] + "/" + name
    finally:
        with psycopg.connect(admin_url, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def backend_cpu_s(pid: int) -> float:
    """CPU seconds process ``pid`` (a PostgreSQL backend) has used: ``utime + stime``.

    In clock ticks (``SC_CLK_TCK``, 10 ms here): only a loop of many calls resolves a call's.
    """
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # fields 14 and 15 of stat


def per_call_ms(values: list[float]) -> dict[str, float]:
    """Mean, p50 and p99 of per-call seconds (CPU or wall), in milliseconds."""
    values = sorted(values)
    return {"mean": round(1e3 * statistics.fmean(values), 3),
            "p50": round(1e3 * values[len(values) // 2], 3),
            "p99": round(1e3 * values[int(len(values) * 0.99)], 3)}  # fmt: skip


def loadavg() -> list[str]:
    """The 1, 5 and 15 minute load averages, as ``/proc/loadavg`` writes them."""
    with open("/proc/loadavg") as f:
        return f.read().split()[:3]


def measured(
    admin_url: str, prefix: str, measure: Callable[[str], dict[str, Any]], **head: Any
) -> dict[str, Any]:
    """``measure(url)`` on a migrated throwaway database, between two load stamps; printed.

    The one-connection CPU benchmarks' frame (``claim_cpu``, ``cycle_cpu``): their figures
    with the time, the load before and after, and ``head``, as JSON on stdout.
    """
    report = {**stamp(), **head}
    with throwaway_database(admin_url, prefix) as url:
        migrations.upgrade(url)
        report.update(measure(url))
    report["loadavg_after"] = loadavg()
    print(json.dumps(report, indent=2))
    return report


def stamp() -> dict[str, Any]:
    """A report's start: the UTC time and the load average before the run."""
    return {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "loadavg_before": loadavg()}
