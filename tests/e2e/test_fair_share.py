"""The pool's fair share: real ``celery worker`` processes hold each team to max_running_jobs."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from api import ApiSettings, create_app
from jobs.dispatch import CeleryDispatcher
from jobs.models import Job
from tests.e2e import flows
from tests.e2e.workers import CeleryWorker
from tests.factories import bearer, team_with_key, tiny_spec


@pytest.fixture(scope="module")
def stack(fresh_database, redis_url, tmp_path_factory):
    """Two workers, each team limited to one running job, no reaper resends to hide behind."""
    from jobs.db import make_engine, make_session_factory, upgrade

    url = fresh_database()
    upgrade(url)
    env = {
        "DATABASE_URL": url,
        "BROKER_URL": redis_url,
        "BILEVEL_QUEUE_PREFIX": f"test{uuid.uuid4().hex[:8]}",
        "BILEVEL_MAX_RUNNING_JOBS": "1",
        # a deferred job must be sent on when its team's job stops, not found by the reaper
        "BILEVEL_REQUEUE_QUEUED_AFTER_S": "3600",
        "BILEVEL_FLUSH_EVERY_S": "0.1",
        "BILEVEL_TORCH_THREADS": "1",
    }
    logs = tmp_path_factory.mktemp("fair-share")
    workers = [CeleryWorker(env, logs, name).launch() for name in ("w1", "w2")]
    engine = make_engine(url)
    settings = ApiSettings(
        database_url=url, broker_url=redis_url, queue_prefix=env["BILEVEL_QUEUE_PREFIX"]
    )
    dispatcher = CeleryDispatcher(settings.broker_url, settings.queue_prefix)
    try:
        for w in workers:
            w.wait_ready()
        with TestClient(create_app(settings, dispatcher=dispatcher)) as client:
            yield client, make_session_factory(engine), workers
    finally:
        for w in workers:
            w.stop()
        dispatcher.close()
        engine.dispose()


def test_a_team_never_holds_more_workers_than_its_limit_and_others_still_run(stack):
    client, sessions, workers = stack
    busy = bearer(team_with_key(sessions)[1])
    other = bearer(team_with_key(sessions)[1])
    spec = tiny_spec(iterations=60, steps=10)
    ids = [client.post("/v1/jobs", json=spec, headers=busy).json()["id"] for _ in range(3)]
    ids.append(client.post("/v1/jobs", json=spec, headers=other).json()["id"])
    for job_id, auth in zip(ids, [busy] * 3 + [other]):
        job, _ = flows.wait_for(
            client, job_id, auth, lambda j: j["status"] in flows.TERMINAL, timeout=120
        )
        assert job["status"] == "succeeded", (job, [w.tail() for w in workers])
    with sessions() as s:
        spans = {j.id: (j.started_at, j.finished_at) for j in s.query(Job).filter(Job.id.in_(
            [uuid.UUID(i) for i in ids]))}  # fmt: skip
    busy_spans = sorted(spans[uuid.UUID(i)] for i in ids[:3])
    # one at a time: each of the team's jobs started after the one before had finished
    for (_, end), (start, _) in zip(busy_spans, busy_spans[1:]):
        assert start >= end, busy_spans
    # two workers and one job of "busy" at a time: the other worker left jobs queued
    logs = "".join(w.log_path.read_text() for w in workers)
    assert "max_running_jobs=1 jobs; left queued" in logs
    # while "busy" waited, the other team's job ran beside its first one
    assert spans[uuid.UUID(ids[3])][0] < busy_spans[-1][0]
