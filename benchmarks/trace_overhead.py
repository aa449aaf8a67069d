"""What streaming the trace to the store adds to a job's wall time.

    .venv/bin/python -m benchmarks.trace_overhead --database-url postgresql://... [--repeats 5]

The same job runs two ways in this process, interleaved so that machine noise hits both
alike: ``core.fit`` alone (no callback, no history), and ``worker.runner.run_job`` on a queued
row (claim, trace batches and checkpoints in PostgreSQL, heartbeats, the final result). The
overhead is the ratio of the medians less one; it bounds what trace writing costs, since the
runner's other work (claim, checkpoints, the final hypergradient) is counted in it too. The
time inside the runner's periodic flushes (one transaction each: trace batch, heartbeat,
checkpoint when due) is also given on its own, as a share of the fit.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
import uuid
from typing import Any

from sqlalchemy import func, select

__all__ = ["measure"]


def _spec(iterations: int) -> dict[str, Any]:
    from tests.factories import example

    spec = copy.deepcopy(example("toy"))
    spec["outer"]["iterations"] = iterations
    return spec


def measure(sessions, database_url: str, *, iterations: int = 3000, repeats: int = 5) -> dict:
    """Median wall times of ``core.fit`` alone and through the runner, and their ratio."""
    import core
    from jobs import repo
    from jobs.models import TracePoint
    from jobs.spec import parse_spec
    from worker import runner
    from worker.build import build
    from worker.settings import WorkerSettings

    spec = parse_spec(_spec(iterations))
    settings = WorkerSettings(database_url=database_url, broker_url=None)
    with sessions.begin() as s:
        team_id = repo.ensure_team(s, f"overhead-{uuid.uuid4().hex[:6]}").id
    runner.warm_up()

    def fit_alone() -> float:
        b = build(spec)
        t0 = time.perf_counter()
        core.fit(b.problem, b.hparams, b.dynamics, b.estimator, keep_history=False, **b.fit_kwargs)
        return time.perf_counter() - t0

    def through_runner() -> float:
        with sessions.begin() as s:
            job, _ = repo.create_job(s, team_id, spec)
        t0 = time.perf_counter()
        outcome = runner.run_job(sessions, job.id, settings)
        elapsed = time.perf_counter() - t0
        with sessions() as s:
            points = s.scalar(select(func.count()).where(TracePoint.job_id == job.id))
        if outcome != "succeeded" or points != iterations:
            raise RuntimeError(f"runner: {outcome} with {points}/{iterations} trace points")
        return elapsed

    flush_s: list[float] = []
    flush = getattr(runner._Stream, "flush", None)

    def timed_flush(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return flush(self, *args, **kwargs)
        finally:
            flush_s[-1] += time.perf_counter() - t0

    def through_runner_timed() -> float:
        flush_s.append(0.0)
        if flush is None:
            return through_runner()
        runner._Stream.flush = timed_flush
        try:
            return through_runner()
        finally:
            runner._Stream.flush = flush

    fit_s, runner_s = [], []
    for r in range(repeats):
        # alternate the order: neither variant always runs on a warmer cache
        pair = (fit_alone, through_runner_timed)
        for fn in pair if r % 2 == 0 else pair[::-1]:
            (fit_s if fn is fit_alone else runner_s).append(fn())
    fit_med, run_med = statistics.median(fit_s), statistics.median(runner_s)
    flush_med = statistics.median(flush_s)
    return {
        "job": f"examples/toy.json with outer.iterations={iterations}",
        "repeats": repeats,
        "fit_alone_s": [round(t, 4) for t in fit_s],
        "runner_s": [round(t, 4) for t in runner_s],
        "fit_alone_median_s": round(fit_med, 4),
        "runner_median_s": round(run_med, 4),
        "overhead_pct": round(100 * (run_med / fit_med - 1), 2),
        "flush_median_s": round(flush_med, 4),
        "flush_pct": round(100 * flush_med / fit_med, 2),
    }


def main(argv: list[str] | None = None) -> int:
    from jobs.db import make_engine, make_session_factory, upgrade

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--database-url", required=True, help="a PostgreSQL database to migrate")
    ap.add_argument("--iterations", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    upgrade(args.database_url)
    engine = make_engine(args.database_url)
    try:
        out = measure(
            make_session_factory(engine),
            args.database_url,
            iterations=args.iterations,
            repeats=args.repeats,
        )
    finally:
        engine.dispose()
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
