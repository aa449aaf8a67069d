"""Service latencies for the issue's closing note (a script, not a test).

    .venv/bin/python -m tests.e2e.bench_service [--jobs 20]

Needs PostgreSQL and Redis as the tests do. Prints (1) submit -> running with an idle
`celery worker`: the job's ``running`` event minus its ``created_at`` (the API's commit),
and the same seen by a client polling every 10 ms; (2) ``GET /trace?max_points=1000`` on a
job with 100,000 points, end to end over HTTP to a real uvicorn server.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psycopg
from sqlalchemy import select

from jobs import db, repo
from jobs.models import Job, JobEvent
from tests.conftest import PG_ADMIN_URL, REDIS_URL
from tests.e2e.workers import ROOT, CeleryWorker
from tests.factories import team_with_key, tiny_spec


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=20)
    ap.add_argument("--points", type=int, default=100_000)
    args = ap.parse_args()
    name = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN_URL.rpartition("/")[0] + "/" + name
    tmp = Path(tempfile.mkdtemp())
    try:
        db.upgrade(url)
        engine = db.make_engine(url)
        sessions = db.make_session_factory(engine)
        _, key = team_with_key(sessions)
        prefix = f"bench{uuid.uuid4().hex[:6]}"
        env = {"DATABASE_URL": url, "BROKER_URL": REDIS_URL, "BILEVEL_QUEUE_PREFIX": prefix}
        worker = CeleryWorker(env, tmp, "bench").start()
        port = _free_port()
        api = subprocess.Popen(
            [sys.executable, "-m", "cli.service", "serve", "--port", str(port),
             "--log-level", "warning"],
            cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        h = {"Authorization": f"Bearer {key}"}
        try:
            with httpx.Client(base_url=base, headers=h, timeout=30) as client:
                for _ in range(300):
                    try:
                        if client.get("/readyz").status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    time.sleep(0.1)
                else:
                    raise SystemExit("the API did not become ready in 30 s")
                store, polled = [], []
                for _ in range(args.jobs):
                    t0 = time.perf_counter()
                    job_id = client.post("/v1/jobs", json=tiny_spec(iterations=3)).json()["id"]
                    deadline = time.monotonic() + 60
                    while (s := client.get(f"/v1/jobs/{job_id}").json()["status"]) == "queued":
                        time.sleep(0.01)
                        if time.monotonic() > deadline:
                            raise SystemExit(
                                f"job {job_id} still queued after 60 s:\n{worker.tail()}"
                            )
                    polled.append(time.perf_counter() - t0)
                    while s not in ("succeeded", "failed", "cancelled"):
                        time.sleep(0.02)
                        s = client.get(f"/v1/jobs/{job_id}").json()["status"]
                        if time.monotonic() > deadline:
                            raise SystemExit(f"job {job_id} still {s} after 60 s")
                    with sessions() as ses:
                        job = ses.get(Job, uuid.UUID(job_id))
                        at = ses.scalar(
                            select(JobEvent.at).where(
                                JobEvent.job_id == job.id, JobEvent.to_status == "running"
                            )
                        )
                        store.append((at - job.created_at).total_seconds())
                print(f"submit->running, {args.jobs} jobs, idle worker (celery --pool solo):")
                med = statistics.median(store) * 1e3
                print(f"  store (running event - created_at): median {med:.1f} ms,"
                      f" min {min(store)*1e3:.1f}, max {max(store)*1e3:.1f}")  # fmt: skip
                print(f"  client (POST .. first GET running, 10 ms polls): median "
                      f"{statistics.median(polled)*1e3:.1f} ms")  # fmt: skip

                job_id = client.post("/v1/jobs", json=tiny_spec(iterations=1)).json()["id"]
                jid = uuid.UUID(job_id)
                t0 = time.perf_counter()
                with sessions.begin() as s:
                    repo.truncate_trace(s, jid, 0)
                for start in range(1, args.points + 1, 10_000):
                    with sessions.begin() as s:
                        repo.write_trace(s, jid, [
                            {"iteration": i, "outer_loss": 1.0 / i, "grad_norm": 1.0, "lr": 0.1,
                             "time_s": 0.01, "cosine": 0.9 if i % 50 == 0 else float("nan")}
                            for i in range(start, min(start + 10_000, args.points + 1))
                        ])  # fmt: skip
                print(f"inserted {args.points} points in {time.perf_counter() - t0:.1f} s")
                for label, query in [
                    ("max_points=1000, all 8 fields", "max_points=1000"),
                    ("max_points=1000, fields=outer_loss", "max_points=1000&fields=outer_loss"),
                    (f"after={args.points - 10} (incremental poll)", f"after={args.points - 10}"),
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
                        r = client.get(f"/v1/jobs/{job_id}/trace?{query}",
                                       headers={"If-None-Match": etag})  # fmt: skip
                        assert r.status_code == 304
                        t304.append(time.perf_counter() - t0)
                    med = statistics.median(times) * 1e3
                    print(f"trace {label}: {n} points, median {med:.1f} ms,"
                          f" max {max(times)*1e3:.1f} ms; 304 median "
                          f"{statistics.median(t304)*1e3:.1f} ms")  # fmt: skip
        finally:
            api.terminate()
            api.wait(10)
            worker.stop()
            engine.dispose()
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
