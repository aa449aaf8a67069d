"""Service latencies: submit -> running with an idle worker, and trace queries over HTTP.

    .venv/bin/python -m benchmarks.service.service_latency [--jobs 20] [--points 100000]

Needs PostgreSQL and Redis as the service tests do (``--pg-admin-url``, ``--redis-url``;
their defaults are the test suite's). Creates a throwaway database, starts an idle
``celery worker --pool solo`` and ``bilevel serve`` on a free port, then prints:

1. submit -> running: the job's ``running`` event minus its ``created_at`` (the API's
   commit), and the same seen by a client polling every 10 ms;
2. ``GET /v1/jobs/{id}/trace`` on a job with ``--points`` points, end to end over HTTP to the
   real uvicorn server, for a downsampled read, one column, and an incremental poll, each
   fresh (200) and revalidated (304).

Writes the numbers as JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy import select

from jobs import db, repo
from jobs.models import Job, JobEvent
from jobs.status import JobStatus

__all__ = ["main"]


def _ms(seconds: list[float]) -> dict[str, float]:
    return {
        "median_ms": round(statistics.median(seconds) * 1e3, 2),
        "min_ms": round(min(seconds) * 1e3, 2),
        "max_ms": round(max(seconds) * 1e3, 2),
    }


def _submit_to_running(
    client: httpx.Client, sessions: Any, jobs: int, worker: Any
) -> dict[str, Any]:
    """Submit ``jobs`` tiny jobs one after another; time each to ``running``."""
    from tests.support import tiny_spec

    store, polled = [], []
    for _ in range(jobs):
        t0 = time.perf_counter()
        job_id = client.post("/v1/jobs", json=tiny_spec(iterations=3)).json()["id"]
        deadline = time.monotonic() + 60
        while (status := client.get(f"/v1/jobs/{job_id}").json()["status"]) == JobStatus.QUEUED:
            time.sleep(0.01)
            if time.monotonic() > deadline:
                raise SystemExit(f"job {job_id} still queued after 60 s:\n{worker.tail()}")
        polled.append(time.perf_counter() - t0)
        while not JobStatus(status).terminal:
            time.sleep(0.02)
            status = client.get(f"/v1/jobs/{job_id}").json()["status"]
            if time.monotonic() > deadline:
                raise SystemExit(f"job {job_id} still {status} after 60 s")
        with sessions() as s:
            job = s.get(Job, uuid.UUID(job_id))
            at = s.scalar(
                select(JobEvent.at).where(
                    JobEvent.job_id == job.id, JobEvent.to_status == JobStatus.RUNNING
                )
            )
            store.append((at - job.created_at).total_seconds())
    print(f"submit->running, {jobs} jobs, idle worker (celery --pool solo):")
    st, po = _ms(store), _ms(polled)
    print(f"  store (running event - created_at): median {st['median_ms']:.1f} ms,"
          f" min {st['min_ms']:.1f}, max {st['max_ms']:.1f}")  # fmt: skip
    print(f"  client (POST .. first GET running, 10 ms polls): median {po['median_ms']:.1f} ms")
    return {"jobs": jobs, "store": st, "client_polled": po}


def _trace_reads(client: httpx.Client, sessions: Any, points: int) -> dict[str, Any]:
    """Write ``points`` trace points into one job, then time three kinds of trace reads."""
    from tests.support import tiny_spec

    job_id = client.post("/v1/jobs", json=tiny_spec(iterations=1)).json()["id"]
    jid = uuid.UUID(job_id)
    t0 = time.perf_counter()
    with sessions.begin() as s:
        repo.truncate_trace(s, jid, 0)
    for start in range(1, points + 1, 10_000):
        with sessions.begin() as s:
            repo.write_trace(s, jid, [
                {"iteration": i, "outer_loss": 1.0 / i, "grad_norm": 1.0, "lr": 0.1,
                 "time_s": 0.01, "cosine": 0.9 if i % 50 == 0 else float("nan")}
                for i in range(start, min(start + 10_000, points + 1))
            ])  # fmt: skip
    print(f"inserted {points} points in {time.perf_counter() - t0:.1f} s")
    results = {}
    for label, query in [
        ("max_points=1000, all 8 fields", "max_points=1000"),
        ("max_points=1000, fields=outer_loss", "max_points=1000&fields=outer_loss"),
        (f"after={points - 10} (incremental poll)", f"after={points - 10}"),
    ]:
        times, n = [], 0
        for _ in range(21):
            t0 = time.perf_counter()
            r = client.get(f"/v1/jobs/{job_id}/trace?{query}")
            times.append(time.perf_counter() - t0)
            n = len(r.json()["iteration"])
        etag = r.headers["etag"]
        t304 = []
        for _ in range(21):
            t0 = time.perf_counter()
            r = client.get(f"/v1/jobs/{job_id}/trace?{query}", headers={"If-None-Match": etag})
            if r.status_code != 304:
                raise SystemExit(f"trace {label}: expected 304, got {r.status_code}")
            t304.append(time.perf_counter() - t0)
        fresh, cached = _ms(times), _ms(t304)
        print(
            f"trace {label}: {n} points, median {fresh['median_ms']:.1f} ms,"
            f" max {fresh['max_ms']:.1f} ms; 304 median {cached['median_ms']:.1f} ms"
        )
        results[label] = {"points": n, "fresh": fresh, "not_modified": cached}
    return {"points": points, "reads": results}


def main() -> None:
    """Parse the flags, run both measurements against a throwaway stack, print, write JSON."""
    from tests.support import PG_ADMIN_URL, REDIS_URL  # also sets the key secret we hash with

    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--jobs", type=int, default=20, help="jobs timed from submit to running")
    ap.add_argument("--points", type=int, default=100_000, help="trace points of the read job")
    ap.add_argument("--pg-admin-url", default=PG_ADMIN_URL)
    ap.add_argument("--redis-url", default=REDIS_URL)
    ap.add_argument("--out", type=Path, default=Path("out/service_latency.json"))
    args = ap.parse_args()

    from tests.support import ROOT, CeleryWorker, free_port, team_with_key, wait_ready

    name = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.pg_admin_url, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    url = args.pg_admin_url.rpartition("/")[0] + "/" + name
    tmp = Path(tempfile.mkdtemp())
    try:
        db.upgrade(url)
        engine = db.make_engine(url)
        sessions = db.make_session_factory(engine)
        _, key = team_with_key(sessions)
        prefix = f"bench{uuid.uuid4().hex[:6]}"
        env = {"DATABASE_URL": url, "BROKER_URL": args.redis_url, "BILEVEL_QUEUE_PREFIX": prefix}
        worker = CeleryWorker(env, tmp, "bench").start()
        port = free_port()
        api = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "serve", "--port", str(port),
             "--log-level", "warning"],
            cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            if not wait_ready(base, api, 30.0):
                raise SystemExit("the API did not become ready in 30 s")
            headers = {"Authorization": f"Bearer {key}"}
            with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
                report = {
                    "submit_to_running": _submit_to_running(client, sessions, args.jobs, worker),
                    "trace": _trace_reads(client, sessions, args.points),
                }
        finally:
            api.terminate()
            api.wait(10)
            worker.stop()
            engine.dispose()
    finally:
        with psycopg.connect(args.pg_admin_url, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
