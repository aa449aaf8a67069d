"""What streaming the trace to the store adds to a job's wall time.

    flock /tmp/bench.lock .venv/bin/python -m benchmarks.service.trace_overhead \\
        --database-url postgresql://postgres@127.0.0.1:5432/<db> [--repeats 5] [--out FILE]

The same job runs two ways in this process, interleaved so that machine noise hits both
alike: ``core.fit`` alone (no callback, no history), and ``worker.runner.execute_job`` on a queued
row (claim, trace batches and checkpoints in PostgreSQL, heartbeats, the final result). The
**total overhead** is the ratio of the medians less one; it bounds what trace writing costs,
since the runner's other work (claim, checkpoints, the final hypergradient) is counted in it
too. The median of the per-pair ratios is given as well (less sensitive to slow drifts in
the machine's load).

Two parts of it are also timed, as shares of the fit alone:

- **flush**: time inside the store transactions that write trace batches (with progress and
  a checkpoint when due). Since the trace writer runs on its own thread, the training loop
  no longer waits for them; their CPU time (``flush_cpu``) still competes with it for the
  interpreter lock, so it is given too. Against the older runner (synchronous flushes in
  ``_Stream.flush``) the same figures time those flushes, which the loop did wait for.
- **callback**: time the loop spends in the runner's per-iteration callback (bookkeeping and
  handing batches over; with the synchronous runner, the flushes too).

Writes go to the database named by ``--database-url`` (migrated first); a team
``overhead-*`` and its jobs are left there.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text

from worker.outcome import Outcome

__all__ = ["measure"]


def _spec(iterations: int) -> dict[str, Any]:
    from tests.support import example

    spec = copy.deepcopy(example("toy"))
    spec["outer"]["iterations"] = iterations
    return spec


def _machine(sessions) -> dict[str, Any]:
    import torch

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    with sessions() as s:
        server = s.execute(text("SHOW server_version")).scalar()
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "postgresql": server,
    }


class _Timer:
    """Wraps a method, adding its wall (and optionally thread CPU) time to the current repeat."""

    def __init__(self, owner, name: str, cpu: bool):
        self.owner, self.name, self.cpu = owner, name, cpu
        self.orig = owner.__dict__[name]
        self.wall: list[float] = []
        self.cpu_s: list[float] = []

    def __enter__(self):
        self.wall.append(0.0)
        self.cpu_s.append(0.0)
        orig, wall, cpu_s, cpu = self.orig, self.wall, self.cpu_s, self.cpu

        def timed(*args, **kwargs):
            t0, c0 = time.perf_counter(), time.thread_time() if cpu else 0.0
            try:
                return orig(*args, **kwargs)
            finally:
                wall[-1] += time.perf_counter() - t0
                if cpu:
                    cpu_s[-1] += time.thread_time() - c0

        setattr(self.owner, self.name, timed)
        return self

    def __exit__(self, *exc):
        setattr(self.owner, self.name, self.orig)


def measure(sessions, database_url: str, *, iterations: int = 3000, repeats: int = 5) -> dict:
    """Median wall times of ``core.fit`` alone and through the runner, and their ratio."""
    import core
    from jobs import repo
    from jobs.models import TracePoint
    from jobs.specs.job import parse_spec
    from worker import runner
    from worker.build import build
    from worker.progress import Progress
    from worker.settings import WorkerSettings
    from worker.trace_writer import TraceWriter

    machine = _machine(sessions)
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

    # the trace writer's transactions, on their own thread
    flush = _Timer(TraceWriter, "_write", cpu=True)
    callback = _Timer(Progress, "__call__", cpu=False)

    def through_runner() -> float:
        with sessions.begin() as s:
            job, _ = repo.create_job(s, team_id, spec)
        with flush, callback:
            t0 = time.perf_counter()
            outcome = runner.execute_job(sessions, job.id, settings)
            elapsed = time.perf_counter() - t0
        with sessions() as s:
            points = s.scalar(select(func.count()).where(TracePoint.job_id == job.id))
        if outcome != Outcome.SUCCEEDED or points != iterations:
            raise RuntimeError(f"runner: {outcome} with {points}/{iterations} trace points")
        return elapsed

    fit_s: list[float] = []
    runner_s: list[float] = []
    for r in range(repeats):
        # alternate the order: neither variant always runs on a warmer cache
        pair = (fit_alone, through_runner)
        for fn in pair if r % 2 == 0 else pair[::-1]:
            (fit_s if fn is fit_alone else runner_s).append(fn())
    fit_med, run_med = statistics.median(fit_s), statistics.median(runner_s)

    def pct(x: float) -> float:
        return round(100 * x / fit_med, 2)

    flush_med, flush_cpu_med = statistics.median(flush.wall), statistics.median(flush.cpu_s)
    callback_med = statistics.median(callback.wall)
    return {
        "job": f"examples/toy.json with outer.iterations={iterations}",
        "machine": {**machine, "load_avg_at_end": [round(x, 2) for x in os.getloadavg()]},
        "runner": "trace writer thread",
        "repeats": repeats,
        "fit_alone_s": [round(t, 4) for t in fit_s],
        "runner_s": [round(t, 4) for t in runner_s],
        "fit_alone_median_s": round(fit_med, 4),
        "runner_median_s": round(run_med, 4),
        "overhead_pct": round(100 * (run_med / fit_med - 1), 2),
        "pairwise_overhead_pct": round(
            100 * (statistics.median(r / f for r, f in zip(runner_s, fit_s)) - 1), 2
        ),
        "flush_median_s": round(flush_med, 4),
        "flush_pct": pct(flush_med),
        "flush_cpu_median_s": round(flush_cpu_med, 4),
        "flush_cpu_pct": pct(flush_cpu_med),
        "flush_blocks_loop": False,  # the trace writer has a thread of its own
        "callback_median_s": round(callback_med, 4),
        "callback_pct": pct(callback_med),
    }


def report(o: dict[str, Any]) -> str:
    """A few lines for a terminal."""
    m = o["machine"]
    return "\n".join(
        [
            f"{o['job']}; {o['runner']}; {m['date']} on {m['host']} ({m['cpus']} x {m['cpu']}, "
            f"load {m['load_avg_at_start'][0]:.2f} -> {m['load_avg_at_end'][0]:.2f}), "
            f"PostgreSQL {m['postgresql']}",
            f"  core.fit alone  {o['fit_alone_median_s']:.3f} s   runner "
            f"{o['runner_median_s']:.3f} s   (medians of {o['repeats']}, interleaved)",
            f"  TOTAL overhead  {o['overhead_pct']:+.2f}%  (per-pair median "
            f"{o['pairwise_overhead_pct']:+.2f}%; target < 3%)",
            f"  flush only      {o['flush_median_s']:.3f} s = {o['flush_pct']:.2f}% wall, "
            f"{o['flush_cpu_pct']:.2f}% CPU"
            + ("" if o["flush_blocks_loop"] else " (on the writer thread, off the loop)"),
            f"  callback        {o['callback_median_s']:.3f} s = {o['callback_pct']:.2f}% "
            "(the loop's own time in the runner, per iteration)",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    from jobs.db import make_engine, make_session_factory, upgrade

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--database-url", required=True, help="a PostgreSQL database to migrate")
    ap.add_argument("--iterations", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, help="also write the JSON here")
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
    print(report(out))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
