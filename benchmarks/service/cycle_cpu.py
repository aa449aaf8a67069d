"""CPU per step of a running job's cycle: heartbeat with its trace batch, and finish.

The scale benchmark's simulated worker spends, per job, one claim, a few transactions each
writing a batch of trace points and renewing the lease, and a last one writing the final
batch and ending the job. On this 2-core machine the claims per second are bounded by the
CPU of that whole cycle, so this measures each step's CPU on both sides of the connection,
one job at a time: the client's ``time.process_time`` around each transaction (the
session's begin and commit included, as the worker pays them) and the backend's
``utime + stime`` from ``/proc/PID/stat`` over each phase (clock ticks: only a loop of many
transactions resolves it). The least of ``--rounds`` rounds is the figure (others load the
machine too).

``--api legacy`` measures the separate calls (``write_trace`` then ``heartbeat``, and
``write_trace`` then ``finish_job``, the scale worker's before); ``--api cycle`` the
combined ones (``heartbeat_with_trace``, ``finish_with_trace``) where the store has them.

    python -m benchmarks.service.cycle_cpu [--jobs 400] [--rounds 3] [--api legacy|cycle]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from benchmarks.service import _scale_load as load
from jobs.status import JobStatus
from jobs.store import db, repo

__all__ = ["main"]

LEASE_S = 30.0


def _records(lo: int, hi: int) -> list[dict[str, Any]]:
    """The scale worker's points ``lo+1 .. hi``."""
    return [{"iteration": i, "outer_loss": 1.0 / i, "grad_norm": 0.5, "lr": 0.01,
             "time_s": 0.01 * i} for i in range(lo + 1, hi + 1)]  # fmt: skip


def _steps(api: str) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """``(beat, finish)``: one transaction's calls each, as the scale worker makes them."""
    if api == "legacy":

        def beat(s: Session, claim: repo.Claim, recs: list[dict[str, Any]], it: int) -> Any:
            repo.write_trace(s, claim.job_id, recs)
            return repo.heartbeat(s, claim, LEASE_S, iteration=it, eta_s=0.5)

        def finish(s: Session, claim: repo.Claim, recs: list[dict[str, Any]], it: int) -> Any:
            repo.write_trace(s, claim.job_id, recs)
            return repo.finish_job(s, claim, JobStatus.SUCCEEDED, iteration=it,
                                   summary={"final_outer_loss": 1.0 / it})  # fmt: skip

        return beat, finish

    def beat_c(s: Session, claim: repo.Claim, recs: list[dict[str, Any]], it: int) -> Any:
        return repo.heartbeat_with_trace(s, claim, LEASE_S, recs, iteration=it, eta_s=0.5)

    def finish_c(s: Session, claim: repo.Claim, recs: list[dict[str, Any]], it: int) -> Any:
        return repo.finish_with_trace(s, claim, JobStatus.SUCCEEDED, recs, iteration=it,
                                      summary={"final_outer_loss": 1.0 / it})  # fmt: skip

    return beat_c, finish_c


def _phase(
    sessions: Any, pid: int, claims: list[repo.Claim], step: Callable[..., Any], lo: int, hi: int
) -> dict[str, Any]:
    """Run ``step`` once per claim (points ``lo+1 .. hi``), each in its own transaction."""
    py = []
    b0 = load.backend_cpu_s(pid)
    for c in claims:
        recs = _records(lo, hi)
        t0 = time.process_time()
        with sessions.begin() as s:
            got = step(s, c, recs, hi)
        py.append(time.process_time() - t0)
        if got not in (True, repo.LeaseState.OK):
            raise RuntimeError(f"step refused for job {c.job_id}: {got!r}")
    backend = 1e3 * (load.backend_cpu_s(pid) - b0) / len(py)
    return {"python_cpu_ms": load.per_call_ms(py), "backend_cpu_ms_mean": round(backend, 3)}


def _measure(url: str, args: argparse.Namespace) -> dict[str, Any]:
    from tests.support import tiny_spec

    engine = db.make_engine(url, pool_size=1, max_overflow=0, pre_ping=False)
    sessions = db.make_session_factory(engine)
    plan = load.make_plan(4, args.jobs * (args.rounds + 1), 0, 30.0, args.seed)
    teams = load.make_teams(sessions, plan.weights)
    load.insert_jobs(sessions, teams, plan.preloaded, tiny_spec(iterations=args.points))
    policy = repo.Policy(cpu_limit=10**6, preemption=False)
    beat, finish = _steps(args.api)
    with sessions() as s:
        pid = int(s.scalar(text("SELECT pg_backend_pid()")))
    cut = [args.points * k // (args.beats + 1) for k in range(args.beats + 2)]
    out: dict[str, Any] = {"api": args.api, "rounds": []}
    for r in range(args.rounds + 1):  # round 0 warms up (psycopg prepares on the 5th run)
        claims = []
        for k in range(args.jobs):
            with sessions.begin() as s:
                got = repo.claim_next(s, "cpu", f"w{k}", LEASE_S, policy)
            if not isinstance(got, repo.Claim):
                raise RuntimeError(f"claim {k} got {got!r}, want a job")
            claims.append(got)
        row = {f"beat_{b + 1}": _phase(sessions, pid, claims, beat, cut[b], cut[b + 1])
               for b in range(args.beats)}  # fmt: skip
        row["finish"] = _phase(sessions, pid, claims, finish, cut[-2], cut[-1])
        if r:
            out["rounds"].append(row)
    out["least"] = {
        k: {"python_cpu_ms_mean": min(x[k]["python_cpu_ms"]["mean"] for x in out["rounds"]),
            "backend_cpu_ms_mean": min(x[k]["backend_cpu_ms_mean"] for x in out["rounds"])}
        for k in out["rounds"][0]
    }  # fmt: skip
    engine.dispose()
    return out


def _args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=400, help="jobs per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--points", type=int, default=40, help="trace points per job")
    p.add_argument("--beats", type=int, default=3, help="heartbeats with a batch per job")
    p.add_argument("--api", choices=("legacy", "cycle"), default="cycle")
    p.add_argument("--seed", type=int, default=26)
    p.add_argument("--pg-admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Measure in a throwaway database; print the figures as JSON."""
    args = _args(argv)
    return load.measured(args.pg_admin_url, "bench_cycle", lambda url: _measure(url, args))


if __name__ == "__main__":
    main()
