"""The pool at size: claims, fairness and the API's pages with hundreds of workers.

    .venv/bin/python -m benchmarks.service.scale [--workers 200] [--teams 100]
        [--jobs 50000] [--trace-points 10000000] [--out benchmarks/service/results/scale.json]

Needs PostgreSQL and Redis as the service tests do (``--pg-admin-url``; the defaults are the
test suite's). In a throwaway database it queues ``--jobs`` jobs of ``--teams`` teams with
skewed weights (studies of 20-400 jobs; ``--live-jobs`` more arrive in bursts during the
run), preloads ``--trace-points`` points of finished jobs in bulk, starts ``bilevel serve``,
times the listed endpoints at rest, then lets ``--workers`` simulated workers
(:mod:`benchmarks.service._scale_workers`: the store's own claim, heartbeat, trace and
finish functions, no torch) drain the queue while the endpoints are timed again under load.

Reports claims per second, claim latency, the scheduling overhead per job, Jain's index of
each backlogged team's time-averaged running jobs per unit of weight, utilisation, the
endpoints' p50/p99 at rest and under load, and the trace store's bytes per million points;
writes JSON and a PNG beside it.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import queue
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

import migrations
from benchmarks.service import _scale_load as load
from benchmarks.service._cpu_timeline import CpuSampler
from benchmarks.service._scale_report import jain_index, plot, summarise
from benchmarks.service._scale_workers import Feeder, Prober, Sampler, worker_process
from jobs.store import db
from worker.settings import WorkerSettings

__all__ = ["jain_index", "main"]


def _args(argv: Sequence[str] | None) -> argparse.Namespace:
    from tests.support import PG_ADMIN_URL, REDIS_URL  # also sets the key secret we hash with

    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--workers", type=int, default=200, help="simulated workers")
    ap.add_argument("--processes", type=int, default=4, help="processes the workers run in")
    ap.add_argument("--conns", type=int, default=4, help="connections per worker process")
    ap.add_argument("--teams", type=int, default=100)
    ap.add_argument("--jobs", type=int, default=50_000, help="jobs queued before the run")
    ap.add_argument(
        "--live-jobs",
        type=int,
        default=None,
        help="jobs arriving in bursts during the run (default jobs/10)",
    )
    ap.add_argument("--trace-points", type=int, default=10_000_000)
    ap.add_argument("--points-per-trace", type=int, default=load.TRACE_JOB_POINTS)
    # 200 workers with 1 s jobs ask for at most 200 claims/s (less each claim's own time):
    # the store's rate could not show above what the pool asks; 0.8 s asks for 250
    ap.add_argument("--job-s", type=float, default=0.8, help="mean simulated job length")
    ap.add_argument(
        "--heartbeat-s",
        type=float,
        default=WorkerSettings.model_fields["flush_every_s"].default,
        help="seconds between a running job's flushes (default: the worker's flush_every_s)",
    )
    ap.add_argument("--points-per-job", type=int, default=40, help="trace points a run writes")
    ap.add_argument("--rest-rounds", type=int, default=20, help="probe rounds before the run")
    ap.add_argument(
        "--max-run-s",
        type=float,
        default=1800.0,
        help="stop the workers after this long (the queue may not be drained)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pg-admin-url", default=PG_ADMIN_URL)
    ap.add_argument("--redis-url", default=REDIS_URL)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/service/results/scale.json"))
    args = ap.parse_args(argv)
    if args.live_jobs is None:
        args.live_jobs = args.jobs // 10
    return args


def _sizes(sessions: Any, points: int) -> dict[str, Any]:
    with sessions() as s:
        trace = load.trace_sizes(s)["bytes"]  # every partition of trace_points
        total = s.scalar(text("SELECT pg_database_size(current_database())"))
    per_m = trace / (points / 1e6) if points else None
    return {"trace_bytes": trace, "database_bytes": total, "trace_points": points,
            "trace_bytes_per_million_points": per_m}  # fmt: skip


def _invariants(sessions: Any, expected: int) -> dict[str, Any]:
    """What the store says after the run: each job claimed and finished exactly once."""
    ours = "FROM jobs WHERE name LIKE 'scale-%'"
    with sessions() as s:
        by_status = dict(s.execute(text(f"SELECT status, count(*) {ours} GROUP BY 1")).all())
        attempts = dict(s.execute(text(f"SELECT attempts, count(*) {ours} GROUP BY 1")).all())
        twice = s.scalar(text(
            "SELECT count(*) FROM (SELECT job_id FROM job_events WHERE to_status = 'succeeded'"
            " GROUP BY job_id HAVING count(*) <> 1) AS d"
        ))  # fmt: skip
    finished = by_status == {"succeeded": expected} and twice == 0
    return {"expected_jobs": expected, "by_status": by_status,
            "attempts": {str(k): v for k, v in attempts.items()},
            "succeeded_events_not_once": twice, "every_job_finished_once": finished}  # fmt: skip


def _serve(url: str, args: argparse.Namespace) -> tuple[subprocess.Popen[bytes], str]:
    from tests.support import ROOT, free_port, wait_ready

    port = free_port()
    env = {**os.environ, "DATABASE_URL": url, "BROKER_URL": args.redis_url,
           "BILEVEL_QUEUE_PREFIX": f"scale{uuid.uuid4().hex[:6]}",
           "BILEVEL_MAX_RUNNING_JOBS": str(args.workers)}  # fmt: skip
    api = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve", "--port", str(port), "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    if not wait_ready(base, api, 60.0):
        api.terminate()
        raise SystemExit("the API did not become ready in 60 s")
    return api, base


def _collect(results: Any, n: int, stop: Any, deadline: float) -> list[dict[str, Any]]:
    """Each worker process's record; past ``deadline`` the workers are told to stop."""
    outs: list[dict[str, Any]] = []
    while len(outs) < n:
        try:
            outs.append(results.get(timeout=max(1.0, deadline - time.time())))
        except queue.Empty:
            stop.set()  # each worker finishes the job in hand, then reports
            deadline = time.time() + 120
    return outs


def _run(url: str, args: argparse.Namespace, report: dict[str, Any]) -> None:
    from tests.support import team_with_key, tiny_spec

    engine = db.make_engine(url, pool_size=2, max_overflow=2)
    sessions = db.make_session_factory(engine)
    spec = tiny_spec(iterations=args.points_per_job)
    plan = load.make_plan(args.teams, args.jobs, args.live_jobs, 30.0, args.seed)
    teams = load.make_teams(sessions, plan.weights)
    # the heaviest team's operator key reads the pages: its own jobs, every team in /v1/pool
    # (the largest view) and /metrics (the operator's alone by default)
    _, key = team_with_key(sessions, "scale-000", scope="operator")
    t0 = time.perf_counter()
    history = load.preload_trace(sessions, teams, spec, args.trace_points,
                                 per_job=args.points_per_trace)  # fmt: skip
    t1 = time.perf_counter()
    queued = load.insert_jobs(sessions, teams, plan.preloaded, spec)
    with engine.connect() as c:
        c.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
    report["preload"] = {"trace_s": round(t1 - t0, 1), "jobs_s": round(time.perf_counter() - t1, 1),
                         "queued": queued}  # fmt: skip
    report["sizes"] = _sizes(sessions, args.trace_points)
    print(f"preloaded {queued} queued jobs, {args.trace_points} trace points: {report['preload']}")
    api, base = _serve(url, args)
    mine = history[0] if history else None
    paths = {"jobs": "/v1/jobs?limit=50", "jobs_queued": "/v1/jobs?status=queued&limit=50",
             "jobs_succeeded": "/v1/jobs?status=succeeded&limit=50", "pool": "/v1/pool",
             "metrics": "/metrics"}  # fmt: skip
    if mine is not None:
        n = args.points_per_trace
        paths["trace_page"] = f"/v1/jobs/{mine}/trace?max_points=1000"
        paths["trace_after"] = f"/v1/jobs/{mine}/trace?after={max(0, n - 50)}"
    ctx = multiprocessing.get_context("spawn")
    stop, fed, results = ctx.Event(), ctx.Event(), ctx.Queue()
    try:
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
            rest = Prober(client, paths, 0.0)
            for _ in range(args.rest_rounds):
                rest.one_round()
            report["rest"] = {"times": rest.times, "failures": rest.failures}
            print(
                "at rest:",
                {k: round(sorted(v)[len(v) // 2] * 1e3, 1) for k, v in rest.times.items()},
            )
            cfg = {"limit": args.workers, "lease_s": 30.0, "heartbeat_s": args.heartbeat_s,
                   "points_per_job": args.points_per_job, "job_s": args.job_s}  # fmt: skip
            per = [args.workers // args.processes + (i < args.workers % args.processes)
                   for i in range(args.processes)]  # fmt: skip
            procs = [ctx.Process(target=worker_process, args=(url, i, n, args.conns, cfg, stop,
                                                               fed, results))
                     for i, n in enumerate(per) if n]  # fmt: skip
            sampler, prober = Sampler(sessions, 1.0), Prober(client, paths, 0.2)
            feeder = Feeder(
                plan.live, lambda st: load.insert_jobs(sessions, teams, [st], spec), fed
            )
            start = time.time()
            for p in procs:
                p.start()
            cpu = CpuSampler({api.pid: "api", os.getpid(): "driver",
                              **{p.pid: "simulator" for p in procs if p.pid}},
                             Path(tempfile.mkdtemp()) / "cpu.jsonl", 0.5,
                             database=url.rsplit("/", 1)[1])  # fmt: skip
            cpu.start()
            for th in (sampler, prober, feeder):
                th.start()
            outs = _collect(results, len(procs), stop, start + args.max_run_s)
            end = time.time()
            report["cpu_samples"] = cpu.stop()
            for th in (sampler, prober):
                th.halt.set()
                th.join()
            for p in procs:
                p.join(30)
    finally:
        stop.set()
        api.terminate()
        try:
            api.wait(10)
        except subprocess.TimeoutExpired:  # a request still being served: not worth waiting
            api.kill()
            api.wait(10)
    report["run"] = {"start": start, "end": end, "live_queued": feeder.queued}
    report["load"] = {"times": prober.times, "failures": prober.failures}
    report["invariants"] = _invariants(sessions, queued + feeder.queued)
    summarise(report, outs, sampler.samples, plan.weights, [str(t) for t in teams], args)
    engine.dispose()


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark in a throwaway database; print the summary, write JSON and PNG."""
    args = _args(argv)
    report = {**load.stamp(), "args": {k: str(v) for k, v in vars(args).items()}}
    with load.throwaway_database(args.pg_admin_url, "bench_scale") as url:
        migrations.upgrade(url)
        _run(url, args, report)
    report["loadavg_after"] = load.loadavg()
    for part in ("summary", "summary_full"):
        report[part]["loadavg_after"] = report["loadavg_after"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report["summary_full"], indent=2, default=str) + "\n")
    plot(report, args.out.with_suffix(".png"))
    print(json.dumps(report["summary"], indent=2, default=str))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    return report["summary_full"]


if __name__ == "__main__":
    main()
