"""The fault suite's own PostgreSQL cluster, Redis servers, workers and store helpers.

Each test gets a fresh database (a copy of a migrated template: the workers' reapers must
not see other tests' jobs), its own Redis and queue prefix, and short leases and reaper
intervals so that a lost worker costs seconds, not minutes. Missing binaries skip the
suite locally and fail it with ``CI=true``.
"""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from jobs import parse_spec
from jobs.store import repo
from jobs.store.models import Job, JobEvent
from tests.conftest import unavailable
from tests.faults.services import (
    FIGURES,
    CrashingWorker,
    PluginlessWorker,
    PostgresServer,
    RedisServer,
    Worker,
    postgres_missing,
    record,
    redis_missing,
    wait_until,
)

TERMINAL = {"succeeded", "failed", "cancelled"}
TEMPLATE = "bilevel_template"


@pytest.fixture(scope="session", autouse=True)
def _figures() -> Iterator[None]:
    """At the end, sum this run's figures into ``out/faults/summary.json``."""
    t0, start = time.monotonic(), time.time()
    yield
    runs = {
        f.stem: json.loads(f.read_text())
        for f in sorted(FIGURES.glob("*.json"))
        if f.stem != "summary" and f.stat().st_mtime >= start
    }
    if not runs:
        return
    total: dict[str, Any] = {"tests": len(runs), "suite_s": round(time.monotonic() - t0, 1)}
    for key in ("kills_survived", "worker_crashes", "jobs_lost", "trace_points_lost"):
        total[key] = sum(r.get(key, 0) for r in runs.values())
    total["restarts_survived"] = sum(
        v for r in runs.values() for k, v in r.items() if k.endswith("restarts_survived")
    )
    record("summary", **total, runs=runs)


@pytest.fixture(scope="session")
def fault_pg() -> Iterator[PostgresServer]:
    """A PostgreSQL cluster of the suite's own, with a migrated template database."""
    from migrations import upgrade

    why = postgres_missing()
    if why:
        unavailable("PostgreSQL binaries", why)
    pg = PostgresServer()
    try:
        pg.init().start()
        pg.execute(f"CREATE DATABASE {TEMPLATE}")
        upgrade(pg.url(TEMPLATE))
        yield pg
    finally:
        pg.destroy()


@pytest.fixture
def store_url(fault_pg) -> str:
    name = f"faults_{uuid.uuid4().hex[:10]}"
    fault_pg.execute(f'CREATE DATABASE "{name}" TEMPLATE {TEMPLATE}')
    return fault_pg.url(name)


@pytest.fixture
def make_redis(tmp_path) -> Iterator:
    """``make_redis(appendonly=...)``: a started Redis of the test's own."""
    why = redis_missing()
    if why:
        unavailable("Redis binaries", why)
    servers: list[RedisServer] = []

    def make(*, appendonly: bool = False) -> RedisServer:
        d = tmp_path / f"redis{len(servers)}"
        d.mkdir()
        servers.append(RedisServer(d, appendonly=appendonly).start())
        return servers[-1]

    yield make
    for r in servers:
        r.stop(kill=True)


class Cluster:
    """The store, the broker and the workers of one fault test, with the probes it needs."""

    def __init__(
        self,
        store_url: str,
        redis: RedisServer,
        log_dir: Path,
        *,
        crash_job: str | None = None,
        pluginless: bool = False,
        fault: str = "kill",
        **env: str,
    ):
        from jobs.dispatch import CeleryDispatcher
        from jobs.store.db import make_engine, make_session_factory

        self.redis, self.log_dir, self.crash_job, self.fault = redis, log_dir, crash_job, fault
        self.pluginless = pluginless
        self.env = {
            "DATABASE_URL": store_url,
            "BROKER_URL": redis.url,
            "BILEVEL_QUEUE_PREFIX": f"faults{uuid.uuid4().hex[:8]}",
            "BILEVEL_LEASE_S": "2",
            "BILEVEL_REAP_EVERY_S": "0.25",
            "BILEVEL_REQUEUE_QUEUED_AFTER_S": "2",
            "BILEVEL_FLUSH_EVERY_S": "0.1",
            "BILEVEL_CHECKPOINT_EVERY_N": "10",
            "BILEVEL_TORCH_THREADS": "1",
            "BILEVEL_STORE_PATIENCE_S": "30",
            **env,
        }
        self.queue = f"{self.env['BILEVEL_QUEUE_PREFIX']}.cpu"
        self.engine = make_engine(store_url, pool_size=2)
        self.sessions = make_session_factory(self.engine)
        self.dispatcher = CeleryDispatcher(redis.url, self.env["BILEVEL_QUEUE_PREFIX"])
        with self.sessions.begin() as s:
            self.team_id = repo.ensure_team(s, "faults").id
        self.workers: dict[str, Worker] = {}

    # -- processes

    def workers_up(self, *names: str) -> list[Worker]:
        """Start workers side by side (each imports torch: seconds) and wait for all."""
        started = []
        for name in names:
            w = self.workers.get(name) or self._worker(name)
            self.workers[name] = w
            started.append(w.launch())
        return [w.wait_ready() for w in started]

    def _worker(self, name: str) -> Worker:
        if self.pluginless:
            return PluginlessWorker(self.env, self.log_dir, name)
        if self.crash_job is None:
            return Worker(self.env, self.log_dir, name)
        return CrashingWorker(self.env, self.log_dir, name, self.crash_job, self.fault)

    def holder(self, job_id) -> Worker:
        """The worker process that holds ``job_id``'s lease now."""
        ident = self.job(job_id).worker
        for w in self.workers.values():
            if w.alive() and w.ident == ident:
                return w
        raise AssertionError(f"no live worker is {ident}")

    def close(self) -> None:
        for w in self.workers.values():
            w.kill()  # throwaway: nothing to shut down cleanly for
        self.dispatcher.close()
        self.engine.dispose()

    def tails(self) -> str:
        return "\n".join(f"--- {n}\n{w.tail(2500)}" for n, w in self.workers.items())

    # -- jobs

    def submit(self, spec: dict[str, Any], *, max_attempts: int = 3) -> uuid.UUID:
        """What ``POST /v1/jobs`` does: commit the queued row, then publish its id."""
        with self.sessions.begin() as s:
            job, _ = repo.create_job(s, self.team_id, parse_spec(spec), max_attempts=max_attempts)
        self.dispatcher.send(job.id, job.queue)
        return job.id

    def job(self, job_id) -> Job:
        with self.sessions() as s:
            return s.get(Job, job_id)

    def wait(self, job_id, until, timeout: float = 60.0, what: str = "") -> Job:
        def check():
            job = self.job(job_id)
            return job if until(job) else None

        try:
            return wait_until(check, timeout, what or f"job {job_id}", poll=0.05)
        except AssertionError as exc:
            job = self.job(job_id)
            raise AssertionError(
                f"{exc}; job is {job.status} attempt {job.attempts} iteration {job.iteration} "
                f"error {job.error}\n{self.tails()}"
            ) from None

    def wait_done(self, job_id, timeout: float = 60.0) -> Job:
        return self.wait(job_id, lambda j: j.status in TERMINAL, timeout, f"job {job_id} to end")

    def events(self, job_id) -> list[tuple[str, str]]:
        """``(to_status, reason)`` of every status change, in order."""
        with self.sessions() as s:
            rows = s.execute(
                select(JobEvent.to_status, JobEvent.detail)
                .where(JobEvent.job_id == job_id)
                .order_by(JobEvent.id)
            ).all()
        return [(to, (detail or {}).get("reason", "")) for to, detail in rows]

    def trace(self, job_id) -> dict[str, list]:
        with self.sessions() as s:
            return repo.trace_columns(s, job_id)

    def hparams(self, job_id) -> np.ndarray:
        with self.sessions() as s:
            data = repo.load_artifact(s, job_id, "hparams").data
        with np.load(io.BytesIO(data)) as z:
            return z["hparams"]


@pytest.fixture
def cluster_factory(store_url, make_redis, tmp_path) -> Iterator:
    """``cluster_factory(appendonly=False, crash_job=None, fault="kill", pluginless=False,
    **env)``: a Cluster; its workers stop at the end. With ``crash_job``, any job of that name
    meets ``fault`` (``tests.faults.hooks``): by default its worker SIGKILLs itself;
    ``pluginless`` workers have no problem plugin installed."""
    made: list[Cluster] = []

    def make(
        *,
        appendonly: bool = False,
        crash_job: str | None = None,
        fault: str = "kill",
        pluginless: bool = False,
        **env: str,
    ) -> Cluster:
        redis = make_redis(appendonly=appendonly)
        made.append(
            Cluster(
                store_url, redis, tmp_path, crash_job=crash_job, fault=fault,
                pluginless=pluginless, **env,
            )
        )  # fmt: skip
        return made[-1]

    yield make
    for c in made:
        c.close()
