"""CPU per dashboard poll in one API process, against the real PostgreSQL and Redis.

    .venv/bin/python -m benchmarks.service.poll_cpu [--requests 2000] [--repeat 5] [--route job]

The load benchmark's poll p99 on a 2-core machine is time spent waiting for a core, so what
each poll costs the API's CPU bounds it. This drives the app in this process through raw
ASGI calls (no sockets, no HTTP client: only the server's own work is timed), with the
deployed per-key rate limit and failed-authentication count in Redis, on a throwaway
database holding one running job with a summary and a trace. Every request is a conditional
GET that the server answers 304, as most of the dashboard's are; the first (a 200) gives the
ETag. Reports ``time.process_time`` per request (every thread of the process), the least
and the median over ``--repeat`` rounds, and the statements per request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

__all__ = ["main"]


class _NoDispatcher:
    def send(self, job_id: Any, queue: str) -> None:
        pass

    def ping(self) -> bool:
        return True


def _store(admin_url: str) -> tuple[str, Any]:
    import uuid

    import psycopg

    from migrations import upgrade

    name = f"bench_poll_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{admin_url.rpartition('/')[0]}/{name}"
    upgrade(url)
    return url, name


def _drop(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _seed(sessions: Any) -> tuple[str, str]:
    from jobs.specs.job import JobSpec
    from jobs.store import repo
    from tests.support import team_with_key, tiny_spec

    team_id, key = team_with_key(sessions)
    with sessions.begin() as s:
        job, _ = repo.create_job(s, team_id, JobSpec.model_validate(tiny_spec(iterations=3000)))
        job.status, job.iteration, job.attempts = "running", 200, 1
        job.summary = {"outer_loss": 0.5, "best_outer_loss": 0.4, "metrics": {"acc": 0.9}}
        job_id = job.id
    with sessions.begin() as s:
        recs = [{"iteration": i, "outer_loss": 1.0 / i, "grad_norm": 0.1} for i in range(1, 201)]
        repo.write_trace(s, job_id, recs)
    return str(job_id), key


async def _call(app: Any, path: str, query: str, headers: dict[str, str]) -> tuple[int, dict]:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": query.encode(), "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }  # fmt: skip
    out: dict[str, Any] = {}

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
            out["headers"] = {k.decode(): v.decode() for k, v in message["headers"]}

    await app(scope, receive, send)
    return out["status"], out["headers"]


async def _drive(
    app: Any, path: str, query: str, key: str, n: int, repeats: int, statements: list[int]
) -> dict[str, Any]:
    auth = {"authorization": f"Bearer {key}", "user-agent": "poll-cpu"}
    status, headers = await _call(app, path, query, auth)
    assert status == 200, status
    cond = {**auth, "if-none-match": headers["etag"]}
    for _ in range(50):  # warm-up: caches, prepared statements, the thread pool
        await _call(app, path, query, cond)
    codes: dict[int, int] = {}
    cpus, walls = [], []
    statements[0] = 0
    for _ in range(repeats):  # the least of several rounds: others' load only adds to it
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for _ in range(n):
            status, _ = await _call(app, path, query, cond)
            codes[status] = codes.get(status, 0) + 1
        cpus.append((time.process_time() - cpu0) / n * 1e3)
        walls.append((time.perf_counter() - wall0) / n * 1e3)
    return {"requests": n * repeats, "statuses": codes,
            "cpu_ms_per_request": round(min(cpus), 3),
            "cpu_ms_per_request_median": round(statistics.median(cpus), 3),
            "wall_ms_per_request": round(min(walls), 3),
            "statements_per_request": round(statements[0] / (n * repeats), 2)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run the measurement; print and return 0."""
    from sqlalchemy import event

    from api import ApiSettings, create_app
    from jobs.store.db import make_engine, make_session_factory
    from tests.support import KEY_SECRET, PG_ADMIN_URL, REDIS_URL

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=5, help="rounds of --requests; the least counts")
    ap.add_argument("--route", choices=("job", "trace", "both"), default="both")
    ap.add_argument("--pg-admin-url", default=PG_ADMIN_URL)
    ap.add_argument("--redis-url", default=REDIS_URL)
    args = ap.parse_args(argv)
    url, name = _store(args.pg_admin_url)
    try:
        engine = make_engine(url, pre_ping=False)
        sessions = make_session_factory(engine)
        job_id, key = _seed(sessions)
        statements = [0]

        @event.listens_for(engine, "before_cursor_execute")
        def _count(*_: Any) -> None:
            statements[0] += 1

        # the deployed limits, in Redis; a rate no poll reaches, so every request is let in
        settings = ApiSettings(database_url=url, broker_url=args.redis_url, key_secret=KEY_SECRET,
                               rate_limit_per_s=1e6, rate_limit_burst=1_000_000)  # fmt: skip
        app = create_app(settings, dispatcher=_NoDispatcher(), sessions=sessions)
        routes = {"job": (f"/v1/jobs/{job_id}", ""),
                  "trace": (f"/v1/jobs/{job_id}/trace",
                            "after=100&max_points=2000&fields=outer_loss,grad_norm")}  # fmt: skip
        report: dict[str, Any] = {}
        for route in ("job", "trace") if args.route == "both" else (args.route,):
            path, query = routes[route]
            r = asyncio.run(_drive(app, path, query, key, args.requests, args.repeat, statements))
            report[route] = r
        with open("/proc/loadavg") as f:
            report["loadavg"] = f.read().split()[:3]
        print(json.dumps(report, indent=1))
        engine.dispose()
    finally:
        _drop(args.pg_admin_url, name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
