"""Load on the distributed service: submitters and dashboard pollers against a real stack.

    .venv/bin/python -m benchmarks.service.load [--pollers 50] [--jobs 16] [--workers 2] \\
        [--api-workers 2]

Starts the API (uvicorn, ``api.main:create_app``) on a free port and ``--workers`` real
``celery worker --pool solo`` processes against a throwaway PostgreSQL database and Redis,
then submits ``--jobs`` jobs from ``--submitters`` concurrent clients while ``--pollers``
dashboard pollers follow them the way ``api/static/js/detail.js`` does: each tick reads the
job with ``If-None-Match`` (a 304 reuses the last body), then its trace with
``after=<last iteration>`` and ``If-None-Match``; the delay starts
at 1 s, grows 1.6x while nothing changes up to 10 s, and a poller stops on a finished job
and opens another. Every client has its own API key (the rate limit is per key).

The defaults are the co-located deployment this 2-core machine allows: two uvicorn
processes, the Celery workers at ``nice 10`` and their job processes in the idle CPU class
(``BILEVEL_JOB_SCHED=idle``), so that batch compute yields the CPU to the interactive API
(``--api-workers 1 --worker-nice 0 --job-sched normal`` is ``bilevel serve`` beside plain
workers).

A p99 on a shared 2-core machine is mostly time spent waiting for a core, so the run also
says who held the cores while the slow polls waited (:mod:`benchmarks.service._cpu_timeline`):
the API, the workers, this run's PostgreSQL backends, Redis, the client, and every other
command on the machine by name, with the run queue and the CPU pressure stall share.
The API runs with its deployed per-key rate limit (``--rate-limit 25``, one Redis round trip
per request); ``--rate-limit 0`` turns it off, as the test suite's environment does.

Reports throughput, p50/p99 latency per route, errors, jobs lost (submitted vs succeeded),
trace points lost (iterations of succeeded jobs vs rows stored, and points a poller that
followed a whole job never received), and the wall-time overhead of trace writing
(``benchmarks.service.trace_overhead``). Prints a table and writes JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx

from benchmarks.service._cpu_timeline import CpuSampler, attribute, loop_lag_probe
from benchmarks.service._load_clients import LoadState, poller, stats, submitter
from jobs.status import JobStatus

__all__ = ["main"]


def _start_api(env: dict[str, str], port: int, api_workers: int, log: Path) -> subprocess.Popen:
    from tests.support import ROOT

    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "api.main:create_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(api_workers),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    with open(log, "wb") as f:
        return subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env}, stdout=f, stderr=f)


def _cpu_busy_pct(seconds: float = 2.0) -> float:
    """How busy the machine's CPUs are over ``seconds`` (/proc/stat): others' load shows here."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]  # total, idle + iowait

    t0, i0 = sample()
    time.sleep(seconds)
    t1, i1 = sample()
    return round(100 * (1 - (i1 - i0) / max(t1 - t0, 1)), 1)


def _store_accounting(sessions, team_id, submitted: dict[str, int]) -> dict:
    from sqlalchemy import func, select

    from jobs.store.models import Job, TracePoint

    q = (
        select(
            Job.id,
            Job.status,
            Job.iterations,
            func.count(TracePoint.iteration),
            func.count(func.distinct(TracePoint.iteration)),
        )
        .outerjoin(TracePoint, TracePoint.job_id == Job.id)
        .where(Job.team_id == team_id)
        .group_by(Job.id)
    )
    with sessions() as s:
        rows = {str(r[0]): r for r in s.execute(q)}
    succeeded = [rows[j] for j in submitted if j in rows and rows[j][1] == JobStatus.SUCCEEDED]
    statuses: dict[str, int] = {}
    for j in submitted:
        st = rows[j][1] if j in rows else "missing"
        statuses[st] = statuses.get(st, 0) + 1
    expected = sum(r[2] for r in succeeded)
    stored = sum(r[4] for r in succeeded)
    return {
        "jobs_submitted": len(submitted),
        "jobs_succeeded": len(succeeded),
        "jobs_lost": len(submitted) - len(succeeded),
        "job_statuses": statuses,
        "trace_points_expected": expected,
        "trace_points_stored": stored,
        "trace_points_lost": expected - stored,
        "trace_points_doubled": sum(r[3] - r[4] for r in succeeded),
    }


def _print_table(report: dict) -> None:
    print(
        f"\n{'route':34s} {'requests':>9s} {'errors':>7s} {'304':>6s} "
        f"{'p50 ms':>8s} {'p99 ms':>8s} {'max ms':>8s}"
    )
    for name, r in report["routes"].items():
        print(
            f"{name:34s} {r['requests']:9d} {r['errors']:7d} {r.get('not_modified', 0):6d} "
            f"{r['p50_ms']:8.1f} {r['p99_ms']:8.1f} {r['max_ms']:8.1f}"
        )
    lo = report["load"]
    print(
        f"\n{lo['requests']} requests in {lo['wall_s']:.1f} s: {lo['throughput_rps']:.1f} req/s,"
        f" {lo['errors']} errors; pollers' p99 {lo['poll_p99_ms']:.1f} ms"
        f" (target < 50 ms: {'met' if lo['target_met'] else 'MISSED'})"
    )
    a = report["accounting"]
    print(
        f"jobs: {a['jobs_submitted']} submitted, {a['jobs_succeeded']} succeeded, "
        f"{a['jobs_lost']} lost; trace points: {a['trace_points_expected']} expected, "
        f"{a['trace_points_stored']} stored, {a['trace_points_lost']} lost; pollers missed "
        f"{a['poller_points_missed']} of {a['poller_points_expected']} on "
        f"{a['complete_follows']} whole-job follows"
    )
    cpu = report.get("cpu")
    if cpu:
        print(f"\nCPU beside the polls ({cpu['samples']} samples; cores in use, mean):")
        for name in ("slow", "fast"):
            g = cpu[name]
            roles = ", ".join(f"{k} {v:.2f}" for k, v in g["cores"].items() if v >= 0.01)
            print(
                f"  {name} (>= or < {cpu['slow_ms']:.0f} ms, {g['requests']} polls): {roles}; "
                f"runnable {g['runnable']}, stalled {g['cpu_stall_share']}, "
                f"client loop lag {g['client_loop_lag_ms_mean']} ms"
            )
    if report.get("trace_overhead"):
        o = report["trace_overhead"]
        print(
            f"trace writing: runner {o['runner_median_s']:.3f} s vs core.fit "
            f"{o['fit_alone_median_s']:.3f} s (median of {o['repeats']}): "
            f"{o['overhead_pct']:+.2f}% (target < 3%); of it in trace flushes "
            f"{o['flush_median_s']:.3f} s ({o['flush_pct']:.2f}%)"
        )


def _parse(argv: list[str] | None) -> argparse.Namespace:
    from tests.support import PG_ADMIN_URL, REDIS_URL

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pollers", type=int, default=50)
    ap.add_argument("--submitters", type=int, default=4)
    ap.add_argument("--jobs", type=int, default=16)
    ap.add_argument("--iterations", type=int, default=3000, help="outer iterations per job")
    ap.add_argument("--steps", type=int, default=10, help="inner steps per job")
    ap.add_argument("--submit-over", type=float, default=20.0, help="seconds to spread submits")
    ap.add_argument("--workers", type=int, default=2, help="celery worker processes")
    ap.add_argument("--api-workers", type=int, default=2, help="uvicorn worker processes")
    ap.add_argument("--worker-nice", type=int, default=10, help="niceness of the celery workers")
    ap.add_argument(
        "--job-sched",
        choices=("normal", "batch", "idle"),
        default="idle",
        help="the job processes' CPU class (BILEVEL_JOB_SCHED): idle yields every core the "
        "API wants",
    )
    ap.add_argument(
        "--rate-limit",
        type=float,
        default=25.0,
        help="the API's per-key requests/s (BILEVEL_RATE_LIMIT_PER_S; 25 is its default, 0 off)",
    )
    ap.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="per worker (default: cores / workers, at least 1, so that the workers do not "
        "oversubscribe the cores the API needs; 0: torch's default, every core)",
    )
    ap.add_argument("--max-points", type=int, default=4000, help="the dashboard's max_points")
    ap.add_argument("--poll-min", type=float, default=1.0)
    ap.add_argument("--poll-max", type=float, default=10.0)
    ap.add_argument("--timeout", type=float, default=600.0, help="give up on the load after")
    ap.add_argument("--overhead-iterations", type=int, default=3000)
    ap.add_argument("--overhead-repeats", type=int, default=5, help="0 skips the measurement")
    ap.add_argument("--pg-admin-url", default=PG_ADMIN_URL)
    ap.add_argument("--redis-url", default=REDIS_URL)
    ap.add_argument("--out", type=Path, default=Path("out/load.json"))
    ap.add_argument("--samples", type=Path, help="also write every request as CSV here")
    ap.add_argument("--cpu-interval", type=float, default=0.1, help="seconds between /proc reads")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    import psycopg

    import migrations
    from benchmarks.service.trace_overhead import measure
    from jobs.store import db
    from tests.support import (
        KEY_SECRET,  # the secret team_with_key hashes keys under
        CeleryWorker,
        free_port,
        team_with_key,
        wait_ready,
    )

    args = _parse(argv)
    name = f"load_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.pg_admin_url, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    url = args.pg_admin_url.rpartition("/")[0] + "/" + name
    tmp = Path(tempfile.mkdtemp(prefix="bilevel-load-"))
    workers: list[CeleryWorker] = []
    api = None
    try:
        migrations.upgrade(url)
        engine = db.make_engine(url)
        sessions = db.make_session_factory(engine)
        team = f"load-{uuid.uuid4().hex[:6]}"
        keys = [team_with_key(sessions, team) for _ in range(args.pollers + args.submitters)]
        team_id = keys[0][0]
        env = {
            "DATABASE_URL": url,
            "BROKER_URL": args.redis_url,
            "BILEVEL_KEY_SECRET": KEY_SECRET,
            "BILEVEL_QUEUE_PREFIX": f"load{uuid.uuid4().hex[:6]}",
        }
        threads = args.torch_threads
        if threads is None:
            threads = max(1, (os.cpu_count() or 1) // max(1, args.workers))
        worker_env = {
            **env,
            "BILEVEL_TORCH_THREADS": str(threads),
            "BILEVEL_JOB_SCHED": args.job_sched,
        }
        # tests.conftest turns the limit off in os.environ; the API gets the deployed one
        api_env = {**env, "BILEVEL_RATE_LIMIT_PER_S": f"{args.rate_limit:g}"}
        for i in range(args.workers):
            worker = CeleryWorker(worker_env, tmp, f"load{i}")
            # from exec on, so every thread and job process the worker makes inherits it
            # (a later setpriority reaches only the thread it names)
            if args.worker_nice:
                worker.cmd = ["nice", "-n", str(args.worker_nice), *worker.cmd]
            worker.start()
            workers.append(worker)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        api = _start_api(api_env, port, args.api_workers, tmp / "api.log")
        if not wait_ready(base, api, 60):
            raise RuntimeError(
                f"the API did not become ready:\n{(tmp / 'api.log').read_text()[-3000:]}"
            )

        # the stack is up and idle: what the CPUs do now is other work on this machine
        busy_before = _cpu_busy_pct() if os.path.exists("/proc/stat") else None
        roots = {os.getpid(): "client", api.pid: "api"}
        roots.update({w.proc.pid: "workers" for w in workers if w.proc is not None})
        sampler = CpuSampler(roots, tmp / "cpu.jsonl", args.cpu_interval, name)
        sampler.start()
        state = LoadState(args)
        t0 = time.perf_counter()
        lags: list[tuple[float, float]] = []
        asyncio.run(_run(state, base, [k for _, k in keys], lags))
        wall = time.perf_counter() - t0
        samples = sampler.stop()
        report = _report(args, state, wall)
        report["machine"]["cpu_busy_before_pct"] = busy_before
        # perf_counter and monotonic differ by an offset: the requests' starts on the
        # sampler's clock
        shift = state.t0_mono - state.t0
        polls = [(t + state.t0 + shift, d) for t, r, d, _ in state.timeline if r.startswith("GET")]
        report["cpu"] = attribute(polls, samples, lags, slow_s=0.05)
        report["accounting"] = {
            **_store_accounting(sessions, team_id, state.submitted),
            **state.poller_accounting(),
        }
        api.terminate()
        api.wait(15)
        for w in workers:
            w.stop()
        if args.overhead_repeats > 0:
            report["trace_overhead"] = measure(
                sessions, url, iterations=args.overhead_iterations, repeats=args.overhead_repeats
            )
        engine.dispose()
    finally:
        if api is not None and api.poll() is None:
            api.kill()
        for w in workers:
            w.stop()
        with psycopg.connect(args.pg_admin_url, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    if args.samples:
        rows = [f"{t:.4f},{route},{dt * 1e3:.2f},{code}" for t, route, dt, code in state.timeline]
        args.samples.write_text("start_s,route,ms,status\n" + "\n".join(rows) + "\n")
    _print_table(report)
    print(f"wrote {args.out}")
    return 0


async def _run(
    state: LoadState, base: str, keys: list[str], lags: list[tuple[float, float]]
) -> None:
    a = state.args
    probe = asyncio.ensure_future(loop_lag_probe(lags, lambda: False))
    clients = [
        httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {k}"}, timeout=30)
        for k in keys
    ]
    try:
        tasks = [submitter(state, clients[a.pollers + i], i) for i in range(a.submitters)]
        tasks += [poller(state, clients[i], i) for i in range(a.pollers)]
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=a.timeout)
    finally:
        probe.cancel()
        for c in clients:
            await c.aclose()


def _report(args: argparse.Namespace, state: LoadState, wall: float) -> dict:
    routes = {name: stats(samples) for name, samples in sorted(state.samples.items())}
    polls = [x for n, s in state.samples.items() if n.startswith("GET") for x in s]
    poll = stats(polls)
    errors = sum(r["errors"] for r in routes.values())
    return {
        "benchmark": "load",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg": os.getloadavg(),
        },
        "config": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in vars(args).items()
            if k not in ("pg_admin_url", "redis_url")
        },
        "load": {
            "wall_s": round(wall, 2),
            "requests": sum(r["requests"] for r in routes.values()),
            "throughput_rps": round(sum(r["requests"] for r in routes.values()) / wall, 1),
            "errors": errors,
            "poll_p50_ms": poll["p50_ms"],
            "poll_p99_ms": poll["p99_ms"],
            "target_met": poll["p99_ms"] < 50 and errors == 0,
        },
        "routes": routes,
        "error_samples": state.error_samples[:20],
    }


if __name__ == "__main__":
    raise SystemExit(main())
