"""CPU per claim, one at a time: the client's Python and its PostgreSQL backend, counted apart.

On a 2-core machine the pool's claims per second are bounded by CPU, not by locks (the
pool-at-scale guide's "What bounds the claims"), so the figure that matters is the CPU one
claim costs, on both sides of the connection. One connection claims ``--claims`` jobs in
turn from the scale benchmark's store (100 teams, skewed weights, 50,000 queued jobs), each
in its own transaction, then finishes them one at a time; the client's CPU is
``time.process_time`` around each call, the backend's the ``utime + stime`` of its
``/proc/PID/stat`` over the whole loop (clock ticks: only a loop of many claims resolves it).

``--claim-module PATH`` measures another ``claim_next`` (a file defining one, e.g. an
earlier release's ``jobs/store/repo/claims.py``) on the same store: a before and after.

    python -m benchmarks.service.claim_cpu [--claims 1000] [--claim-module PATH]
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import text

from benchmarks.service import _scale_load as load
from jobs.status import JobStatus
from jobs.store import db, repo

__all__ = ["main"]


def _claim_fn(path: str | None) -> Callable[..., Any]:
    if path is None:
        return repo.claim_next
    spec = importlib.util.spec_from_file_location("claim_under_test", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.claim_next  # type: ignore[no-any-return]


def _measure(url: str, args: argparse.Namespace) -> dict[str, Any]:
    from tests.support import tiny_spec

    engine = db.make_engine(url, pool_size=1, max_overflow=0)
    sessions = db.make_session_factory(engine)
    plan = load.make_plan(args.teams, args.jobs, 0, 30.0, args.seed)
    teams = load.make_teams(sessions, plan.weights)
    load.insert_jobs(sessions, teams, plan.preloaded, tiny_spec(iterations=10))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.execute(text("VACUUM ANALYZE jobs"))  # the plans a long-running store has
    claim_next = _claim_fn(args.claim_module)
    policy = repo.Policy(cpu_limit=args.limit, preemption=False)
    out: dict[str, Any] = {"rounds": []}
    with sessions() as s:
        pid = s.scalar(text("SELECT pg_backend_pid()"))
        s.commit()
        for _ in range(args.warmup):  # psycopg prepares a statement on its fifth run
            got = claim_next(s, "cpu", "warm", 30.0, policy)
            s.commit()
            assert isinstance(got, repo.Claim), got
            repo.finish_job(s, got, JobStatus.SUCCEEDED)
            s.commit()
        for _ in range(args.rounds):
            row: dict[str, Any] = {}
            held, py, wall = [], [], []
            b0, w0 = load.backend_cpu_s(pid), time.perf_counter()
            for k in range(args.claims):
                c0, t0 = time.process_time(), time.perf_counter()
                got = claim_next(s, "cpu", f"w{k}", 30.0, policy)
                s.commit()
                py.append(time.process_time() - c0)
                wall.append(time.perf_counter() - t0)
                assert isinstance(got, repo.Claim), got
                held.append(got)
            b1, w1 = load.backend_cpu_s(pid), time.perf_counter()
            row["claim"] = {"python_cpu_ms": load.per_call_ms(py),
                            "wall_ms": load.per_call_ms(wall),
                            "backend_cpu_ms_mean": round(1e3 * (b1 - b0) / len(py), 3),
                            "loop_s": round(w1 - w0, 2)}  # fmt: skip
            py = []
            for got in held:
                c0 = time.process_time()
                assert repo.finish_job(s, got, JobStatus.SUCCEEDED)
                s.commit()
                py.append(time.process_time() - c0)
            b2 = load.backend_cpu_s(pid)
            backend = round(1e3 * (b2 - b1) / len(py), 3)
            row["finish"] = {"python_cpu_ms": load.per_call_ms(py), "backend_cpu_ms_mean": backend}
            out["rounds"].append(row)
    engine.dispose()
    return out


def _args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teams", type=int, default=100)
    p.add_argument("--jobs", type=int, default=50_000, help="jobs queued")
    p.add_argument("--claims", type=int, default=1000, help="claims per round")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--limit", type=int, default=200, help="running limit per team")
    p.add_argument("--seed", type=int, default=26)
    p.add_argument("--claim-module", help="a file defining the claim_next to measure")
    p.add_argument("--pg-admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Measure in a throwaway database; print the figures as JSON."""
    args = _args(argv)
    claim = args.claim_module or "jobs.store.repo.claim_next"
    return load.measured(args.pg_admin_url, "bench_claim", lambda url: _measure(url, args),
                         claim=claim)  # fmt: skip


if __name__ == "__main__":
    main()
