"""Helpers of the dashboard's end-to-end test: the embedded service (``bilevel serve``) in a
subprocess, a 100,000-point job written straight into its store, and the headless Chromium
to drive.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.factories import free_port, wait_ready

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("DASHBOARD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def missing_service_pieces() -> str | None:
    """Why the service cannot run the dashboard here, or ``None`` when it can."""
    try:
        import api.main
        import api.routes.dashboard  # noqa: F401
        import cli.main  # noqa: F401
        import worker.local  # noqa: F401
        from jobs import repo
    except ImportError as exc:
        return f"service not importable yet: {exc}"
    for name in ("create_job", "write_trace", "ensure_team"):
        if not hasattr(repo, name):
            return f"jobs.repo has no {name} yet"
    return None


def missing_browser() -> str | None:
    """Why no headless Chromium can be driven here, or ``None``."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright; no `playwright install`)"
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return f"no Chromium at {CHROMIUM} (apt-get install -y chromium chromium-driver)"
    return None


@dataclass
class Service:
    url: str
    key: str
    state: Path
    log_path: Path
    proc: subprocess.Popen
    log: object

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.log.close()


def start_service(state: Path, timeout: float = 60.0) -> Service:
    """The embedded service on a free port, its state (SQLite, key) under ``state``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "BROKER_URL", "CELERY_BROKER_URL")
    }
    env.update(BILEVEL_STATE_DIR=str(state), BILEVEL_FLUSH_EVERY_S="0.1", BILEVEL_TORCH_THREADS="1")
    port = free_port()
    log_path = state / "serve.log"
    log = open(log_path, "w")  # noqa: SIM115 - kept open for the process
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli.main",
            "serve",
            "--port",
            str(port),
            "--log-level",
            "info",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    if not wait_ready(url, proc, timeout):
        proc.kill()
        log.close()
        raise RuntimeError(f"the service did not start:\n{log_path.read_text()}")
    key = (state / "api_key").read_text().strip()
    return Service(url, key, state, log_path, proc, log)


def seed_long_job(state: Path, spec: dict, points: int = 100_000) -> str:
    """A succeeded job of the ``local`` team with ``points`` trace points, written through
    the jobs repo straight into the embedded store; returns its id."""
    from sqlalchemy import select, update

    from jobs import repo
    from jobs.db import make_engine, make_session_factory, sqlite_url
    from jobs.models import Job, Team, utcnow
    from jobs.specs.job import JobSpec

    spec = {**spec, "outer": {**spec["outer"], "iterations": points}}
    engine = make_engine(sqlite_url(state))
    sessions = make_session_factory(engine)
    try:
        with sessions.begin() as s:
            team = s.scalar(select(Team).where(Team.name == "local"))
            job, _ = repo.create_job(s, team.id, JobSpec.model_validate(spec))
            job_id = job.id
            # the same transaction takes it out of the queue: no executor ever sees it queued
            now = utcnow()
            records = []
            for i in range(1, points + 1):
                loss = 0.05 + 2.0 / math.sqrt(i) * (1.0 + 0.05 * math.sin(i / 50.0))
                rec = {
                    "iteration": i,
                    "outer_loss": loss,
                    "grad_norm": 1.0 / math.sqrt(i),
                    "lr": 0.1,
                    "time_s": i * 1e-3,
                }
                if i % 1000 == 0:
                    rec.update(exact_norm=1.1 / math.sqrt(i), cosine=0.99, rel_error=0.1)
                records.append(rec)
            for k in range(0, points, 20_000):
                repo.write_trace(s, job_id, records[k : k + 20_000])
            best = min(records, key=lambda r: r["outer_loss"])
            s.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(
                    status="succeeded",
                    iteration=points,
                    attempts=1,
                    started_at=now,
                    finished_at=now,
                    updated_at=now,
                    eta_s=0.0,
                    summary={
                        "last_outer_loss": records[-1]["outer_loss"],
                        "best_outer_loss": best["outer_loss"],
                        "best_iteration": best["iteration"],
                        "metrics": {},
                    },
                )
            )
    finally:
        engine.dispose()
    return str(job_id)


def wait_job(client: httpx.Client, job_id: str, until, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if until(job):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting on job {job_id}: {job['status']}")
        time.sleep(0.1)


def new_id() -> str:
    return str(uuid.uuid4())
