"""Load on the distributed service: submitters and dashboard pollers against a real stack.

    .venv/bin/python -m benchmarks.service.load [--pollers 50] [--jobs 16] [--workers 2] \\
        [--api-workers 2]

Starts the API (uvicorn, ``api.main:create_app``) on a free port and ``--workers`` real
``celery worker --pool solo`` processes against a throwaway PostgreSQL database and Redis,
then submits ``--jobs`` jobs from ``--submitters`` concurrent clients while ``--pollers``
dashboard pollers (spread over ``--client-processes`` processes, an event loop each, as
browsers are: :mod:`benchmarks.service._load_pollers`) follow them the way
``api/static/js/detail.js`` does: each tick reads the
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

Every answer's ``Server-Timing`` says how long the app itself took: the report splits the
slow polls into the app's time and the rest (the queue before it, the client after).

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

from benchmarks.service._cpu_timeline import CpuSampler, attribute, loop_lag_probe
from benchmarks.service._load_clients import (
    LoadState,
    app_share,
    client_for,
    poller,
    stats,
    submitter,
)
from benchmarks.service._load_pollers import PollerProcesses
from benchmarks.service._load_report import print_table, store_accounting

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


def _sessions_opened(sessions) -> int:
    """Connections made to this run's database so far (a connection is a forked backend)."""
    from sqlalchemy import text

    with sessions() as s:
        q = "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
        return int(s.scalar(text(q)) or 0)


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


def _parse(argv: list[str] | None) -> argparse.Namespace:
    from tests.support import PG_ADMIN_URL, REDIS_URL

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pollers", type=int, default=50)
    ap.add_argument("--submitters", type=int, default=4)
    ap.add_argument(
        "--client-processes",
        type=int,
        default=5,
        help="processes the pollers run in, an event loop each, as browsers are "
        "(0: every poller on the submitters' loop, in this process)",
    )
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
    children: PollerProcesses | None = None
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
        key_list = [k for _, k in keys]
        if args.client_processes > 0:
            children = PollerProcesses(
                vars(args), base,
                key_list[: args.pollers], args.client_processes,
            )  # fmt: skip
            children.start()
        sessions_before = _sessions_opened(sessions)
        state = LoadState(args)
        t0 = time.perf_counter()
        lags: list[tuple[float, float]] = []
        results = asyncio.run(_run(state, base, key_list, lags, children))
        wall = time.perf_counter() - t0
        samples = sampler.stop()
        own_timeline = list(state.timeline)
        _merge(state, results)
        report = _report(args, state, wall)
        report["machine"]["cpu_busy_before_pct"] = busy_before
        time.sleep(1.0)  # a backend reports its session to the statistics within a second
        report["load"]["db_sessions_opened"] = _sessions_opened(sessions) - sessions_before
        # perf_counter and monotonic differ by an offset: the requests' starts on the
        # sampler's clock; each request beside its own loop's lags (the parent's is 0)
        shift = state.t0_mono - state.t0
        runs = [(0, own_timeline, lags)] + [(r["loop"], r["timeline"], r["lags"]) for r in results]
        polls = [(t + state.t0 + shift, d, loop) for loop, rows, _ in runs
                 for t, route, d, *_ in rows if route.startswith("GET")]  # fmt: skip
        loop_lags = [(at, lag, loop) for loop, _, rows in runs for at, lag in rows]
        report["cpu"] = attribute(polls, samples, loop_lags, slow_s=0.05)
        report["app_share"] = app_share(state.timeline, slow_s=0.05)
        report["accounting"] = {
            **store_accounting(sessions, team_id, state.submitted),
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
        if children is not None:
            children.kill()
        if api is not None and api.poll() is None:
            api.kill()
        for w in workers:
            w.stop()
        with psycopg.connect(args.pg_admin_url, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    if args.samples:
        rows = [
            f"{t:.4f},{route},{dt * 1e3:.2f},{code},{'' if app is None else f'{app:.3f}'}"
            for t, route, dt, code, app in state.timeline
        ]
        args.samples.write_text("start_s,route,ms,status,app_ms\n" + "\n".join(rows) + "\n")
    print_table(report)
    print(f"wrote {args.out}")
    return 0


async def _run(
    state: LoadState,
    base: str,
    keys: list[str],
    lags: list[tuple[float, float]],
    children: PollerProcesses | None,
) -> list[dict]:
    """Submitters here; pollers in ``children`` (their results) or here too (``[]``)."""
    a = state.args
    probe = asyncio.ensure_future(loop_lag_probe(lags, lambda: False))
    own = keys[a.pollers :] if children else keys
    clients = [client_for(base, k) for k in own]
    try:
        if children is None:
            tasks = [submitter(state, clients[a.pollers + i], i) for i in range(a.submitters)]
            tasks += [poller(state, clients[i], i) for i in range(a.pollers)]
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=a.timeout)
            return []
        state.listeners.append(children.submitted)
        children.go(state.t0, state.t0_mono)
        await asyncio.wait_for(
            asyncio.gather(*(submitter(state, clients[i], i) for i in range(a.submitters))),
            timeout=a.timeout,
        )
        children.done_submitting()
        return await children.results(a.timeout)
    finally:
        probe.cancel()
        for c in clients:
            await c.aclose()


def _merge(state: LoadState, results: list[dict]) -> None:
    """The children's timings into ``state``: one run's routes, timeline and follows."""
    for r in results:
        for route, rows in r["samples"].items():
            state.samples.setdefault(route, []).extend(rows)
        state.timeline.extend(r["timeline"])
        state.follows.extend(r["follows"])
        state.error_samples.extend(r["errors"])
        state.finished.update(r["finished"])


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
