"""The distributed service: API + real PostgreSQL + Redis + real ``celery worker`` processes."""

from __future__ import annotations

import io
import uuid

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api import ApiSettings, create_app
from jobs.dispatch import CeleryDispatcher
from tests.e2e import dataset_flows, flows
from tests.e2e.workers import CeleryWorker
from tests.factories import team_with_key, tiny_spec


@pytest.fixture(scope="module")
def e2e_url(fresh_database):
    """A database of its own: the workers' reaper must not pick up other tests' jobs."""
    from migrations import upgrade

    url = fresh_database()
    upgrade(url)
    return url


@pytest.fixture(scope="module")
def env(e2e_url, redis_url):
    return {
        "DATABASE_URL": e2e_url,
        "BROKER_URL": redis_url,
        "BILEVEL_QUEUE_PREFIX": f"test{uuid.uuid4().hex[:8]}",
        "BILEVEL_LEASE_S": "2",
        "BILEVEL_REAP_EVERY_S": "0.5",
        "BILEVEL_FLUSH_EVERY_S": "0.1",
        "BILEVEL_CHECKPOINT_EVERY_N": "10",
        "BILEVEL_TORCH_THREADS": "1",
    }


@pytest.fixture(scope="module")
def worker(env, tmp_path_factory):
    w = CeleryWorker(env, tmp_path_factory.mktemp("workers"), "first").start()
    yield w
    w.stop()


@pytest.fixture(scope="module")
def client(env, worker):
    settings = ApiSettings(
        database_url=env["DATABASE_URL"],
        broker_url=env["BROKER_URL"],
        queue_prefix=env["BILEVEL_QUEUE_PREFIX"],
    )
    dispatcher = CeleryDispatcher(settings.broker_url, settings.queue_prefix)
    with TestClient(create_app(settings, dispatcher=dispatcher)) as c:
        yield c
    dispatcher.close()


@pytest.fixture(scope="module")
def sessions(e2e_url):
    from jobs.store.db import make_engine, make_session_factory

    engine = make_engine(e2e_url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture(scope="module")
def auth(sessions):
    return {"Authorization": f"Bearer {team_with_key(sessions)[1]}"}


def test_jobs_on_an_uploaded_dataset_run_on_a_worker_and_learn(client, auth, sessions):
    other = {"Authorization": f"Bearer {team_with_key(sessions)[1]}"}
    dataset_flows.upload_train_and_download(client, auth, other)


def test_a_submitted_job_runs_on_a_worker_and_succeeds(client, auth, worker):
    flows.submit_run_and_download(client, auth)
    assert client.get("/readyz").status_code == 200


def test_a_plugin_kind_runs_on_a_worker_and_records_its_package(client, auth, worker):
    flows.plugin_job_runs(client, auth)


def test_a_running_job_is_cancelled(client, auth, worker):
    flows.cancel_a_running_job(client, auth)


def test_errors_are_problems(client, auth, sessions):
    other = {"Authorization": f"Bearer {team_with_key(sessions)[1]}"}
    flows.errors_are_problems(client, auth, other)


def test_a_job_survives_a_sigkilled_worker_and_a_sigtermed_one_with_a_complete_trace(
    client, auth, worker, env, tmp_path
):
    import core
    from jobs import parse_spec
    from worker.build import build

    iterations = 400
    spec = tiny_spec(iterations=iterations, steps=30)
    job_id = client.post("/v1/jobs", json=spec, headers=auth).json()["id"]
    flows.wait_for(client, job_id, auth, lambda j: j["progress"]["iteration"] >= 25)
    worker.kill()
    # another worker starts; its reaper finds the expired lease and resumes the job
    second = CeleryWorker(env, tmp_path, "second").start()
    try:
        job, _ = flows.wait_for(
            client, job_id, auth,
            lambda j: (j["attempts"] == 2 and j["progress"]["iteration"] >= 60)
            or j["status"] in flows.TERMINAL,
        )  # fmt: skip
        assert job["status"] == "running", (job, second.tail())
        # a deploy stops it (SIGTERM): the job checkpoints, goes back to the queue, and
        # the worker exits at once instead of finishing the job first
        second.stop()
        assert second.proc.returncode == 0, second.tail()
        job = client.get(f"/v1/jobs/{job_id}", headers=auth).json()
        assert job["status"] == "queued" and job["progress"]["iteration"] < iterations
    finally:
        second.stop()
    third = CeleryWorker(env, tmp_path, "third").start()
    try:
        job, _ = flows.wait_for(
            client, job_id, auth, lambda j: j["status"] in flows.TERMINAL, timeout=90
        )
    finally:
        third.stop()
    assert job["status"] == "succeeded", (job, third.tail())
    assert job["attempts"] == 3
    trace = client.get(f"/v1/jobs/{job_id}/trace", headers=auth).json()
    assert trace["iteration"] == list(range(1, iterations + 1))  # none missing or doubled
    # the resumed run is the uninterrupted one, bit for bit
    built = build(parse_spec(spec))
    ref = core.fit(built.problem, built.hparams, built.dynamics, built.estimator,
                   **built.fit_kwargs)  # fmt: skip
    assert trace["outer_loss"] == ref.history["outer_loss"]
    r = client.get(f"/v1/jobs/{job_id}/hparams", headers=auth)
    with np.load(io.BytesIO(r.content)) as z:
        np.testing.assert_array_equal(z["hparams"], ref.hparams.numpy())
