"""Two real ``celery worker`` processes on PostgreSQL and Redis, and an API client on them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api import ApiSettings, create_app
from jobs.dispatch import CeleryDispatcher
from jobs.store.models import Job, JobEvent
from tests.e2e import flows
from tests.e2e.workers import CeleryWorker


@dataclass
class PoolStack:
    client: TestClient
    sessions: sessionmaker[Session]
    workers: list[CeleryWorker]

    def logs(self) -> str:
        return "\n".join(w.tail() for w in self.workers)

    def wait_all(self, ids: list[str], auth: dict[str, str], timeout: float = 240) -> None:
        """Wait for every job to end; each must succeed."""
        for job_id in ids:
            job, _ = flows.wait_for(
                self.client, job_id, auth, lambda j: j["status"] in flows.TERMINAL, timeout
            )
            assert job["status"] == "succeeded", (job, self.logs())

    def rows(self, ids: list[str]) -> dict[str, Job]:
        with self.sessions() as s:
            jobs = s.scalars(select(Job).where(Job.id.in_([uuid.UUID(i) for i in ids])))
            return {str(j.id): j for j in jobs}

    def events(self, ids: list[str]) -> list[JobEvent]:
        with self.sessions() as s:
            q = select(JobEvent).where(JobEvent.job_id.in_([uuid.UUID(i) for i in ids]))
            return list(s.scalars(q.order_by(JobEvent.at, JobEvent.id)))


@contextmanager
def pool_stack(
    fresh_database, redis_url: str, logs, workers: int = 2, **env_over: Any
) -> Iterator[PoolStack]:
    """A fresh store, ``workers`` workers (``w1``, ...) with ``env_over`` over fast settings."""
    from jobs.store.db import make_engine, make_session_factory
    from migrations import upgrade

    url = fresh_database()
    upgrade(url)
    env = {
        "DATABASE_URL": url,
        "BROKER_URL": redis_url,
        "BILEVEL_QUEUE_PREFIX": f"test{uuid.uuid4().hex[:8]}",
        # a waiting job must be sent on by the claims, not found by the reaper's resend
        "BILEVEL_REQUEUE_QUEUED_AFTER_S": "3600",
        "BILEVEL_FLUSH_EVERY_S": "0.1",
        "BILEVEL_TORCH_THREADS": "1",
        **{k: str(v) for k, v in env_over.items()},
    }
    procs = [CeleryWorker(env, logs, f"w{i + 1}").launch() for i in range(workers)]
    engine = make_engine(url)
    settings = ApiSettings(
        database_url=url, broker_url=redis_url, queue_prefix=env["BILEVEL_QUEUE_PREFIX"]
    )
    dispatcher = CeleryDispatcher(redis_url, settings.queue_prefix)
    try:
        for w in procs:
            w.wait_ready()
        with TestClient(create_app(settings, dispatcher=dispatcher)) as client:
            yield PoolStack(client, make_session_factory(engine), procs)
    finally:
        for w in procs:
            w.stop()
        dispatcher.close()
        engine.dispose()
