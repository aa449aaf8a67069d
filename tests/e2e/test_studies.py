"""The acceptance study on the distributed service: PostgreSQL, Redis, a real Celery worker.

Hypercleaning over K in {1, 5, 25, 100} with 3 data seeds (a few seconds per member): every
member succeeds, the table equals what the members' own results give, and the final
validation loss falls with K on average, as in the paper's Table 2. Cancel ends every
member still queued or running.
"""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from api import ApiSettings, create_app
from jobs.dispatch import CeleryDispatcher
from jobs.studies.table import mean_std
from tests.e2e.workers import CeleryWorker
from tests.factories import example, team_with_key, tiny_spec, wait_until
from tests.webhook_receiver import Receiver, verify_signature

KS = [1, 5, 25, 100]


@pytest.fixture(scope="module")
def env(fresh_database, redis_url):
    from jobs.db import upgrade

    url = fresh_database()
    upgrade(url)
    return {
        "DATABASE_URL": url,
        "BROKER_URL": redis_url,
        "BILEVEL_QUEUE_PREFIX": f"test{uuid.uuid4().hex[:8]}",
        "BILEVEL_LEASE_S": "5",
        "BILEVEL_REAP_EVERY_S": "0.5",
        "BILEVEL_FLUSH_EVERY_S": "0.1",
        "BILEVEL_TORCH_THREADS": "1",
        # webhooks to the test's loopback receiver, sent by the worker's notifier thread
        "BILEVEL_WEBHOOK_ALLOW": '["127.0.0.0/8"]',
        "BILEVEL_WEBHOOK_POLL_S": "0.2",
    }


@pytest.fixture(scope="module")
def client(env, tmp_path_factory):
    worker = CeleryWorker(env, tmp_path_factory.mktemp("workers"), "studies").start()
    settings = ApiSettings(database_url=env["DATABASE_URL"], broker_url=env["BROKER_URL"],
                           queue_prefix=env["BILEVEL_QUEUE_PREFIX"],
                           webhook_allow=["127.0.0.0/8"])  # fmt: skip
    dispatcher = CeleryDispatcher(settings.broker_url, settings.queue_prefix)
    try:
        with TestClient(create_app(settings, dispatcher=dispatcher)) as c:
            yield c
    finally:
        dispatcher.close()
        worker.stop()


@pytest.fixture(scope="module")
def auth(env):
    from jobs.db import make_engine, make_session_factory

    engine = make_engine(env["DATABASE_URL"])
    try:
        key = team_with_key(make_session_factory(engine), scope="admin")[1]
        return {"Authorization": f"Bearer {key}"}
    finally:
        engine.dispose()


def _hypercleaning() -> dict:
    spec = example("hypercleaning")
    spec["problem"].update(n_train=200, n_val=200)
    spec["outer"]["iterations"] = 40
    spec["diagnostics"]["every"] = 0
    return spec


def _wait(client, auth, sid, timeout):
    def ended():
        study = client.get(f"/v1/studies/{sid}", headers=auth).json()
        return study if study["progress"]["finished"] == study["progress"]["members"] else None

    return wait_until(ended, timeout, f"study {sid} to end", poll=0.5)


def test_a_hypercleaning_study_over_K_reproduces_table_2s_trend(client, auth):
    receiver = Receiver()
    hook = client.post("/v1/webhooks", json={"url": receiver.url}, headers=auth).json()
    body = {"name": "hypercleaning K", "base": _hypercleaning(),
            "grid": {"hypergradient.K": KS, "problem.seed": [0, 1, 2]}}  # fmt: skip
    r = client.post("/v1/studies", json=body, headers=auth)
    assert r.status_code == 201, r.text
    study = _wait(client, auth, r.json()["id"], timeout=300)
    assert [m["status"] for m in study["members"]] == ["succeeded"] * 12
    assert study["status"] == "succeeded"
    # the table, recomputed from each member's own result
    by_k: dict[int, list[float]] = {K: [] for K in KS}
    for m in study["members"]:
        result = client.get(f"/v1/jobs/{m['job_id']}/result", headers=auth).json()
        by_k[m["values"]["hypergradient.K"]].append(result["metrics"]["val_loss"])
    rows = {row["values"]["hypergradient.K"]: row for row in study["table"]}
    assert sorted(rows) == KS
    for K, losses in by_k.items():
        mean, std = mean_std(losses)
        assert rows[K]["stats"]["val_loss"]["mean"] == pytest.approx(mean, rel=1e-12)
        assert rows[K]["stats"]["val_loss"]["std"] == pytest.approx(std, rel=1e-12)
        assert rows[K]["stats"]["peak_bytes"]["mean"] > 0
        assert rows[K]["stats"]["s_per_iteration"]["mean"] > 0
    means = [rows[K]["stats"]["val_loss"]["mean"] for K in KS]
    assert means == sorted(means, reverse=True), f"mean val_loss per K {dict(zip(KS, means))}"
    # memory: one more recorded step per unit of K (Table 1's O(MK))
    peaks = [rows[K]["stats"]["peak_bytes"]["mean"] for K in KS]
    assert peaks == sorted(peaks)
    # one signed event per member and one for the study, sent by the worker
    try:
        wait_until(lambda: len(receiver.requests) >= 13, 30, "13 webhook events", poll=0.2)
        events = sorted(h["Bilevel-Event"] for h, _ in receiver.requests)
        assert events == ["job.succeeded"] * 12 + ["study.succeeded"]
        assert all(verify_signature(hook["secret"], h, b) for h, b in receiver.requests)
    finally:
        receiver.close()
        client.delete(f"/v1/webhooks/{hook['id']}", headers=auth)


def test_cancel_ends_every_member_still_queued_or_running(client, auth):
    body = {"name": "long", "base": tiny_spec(iterations=100_000),
            "grid": {"seed": [0, 1, 2]}}  # fmt: skip
    sid = client.post("/v1/studies", json=body, headers=auth).json()["id"]

    def running():
        study = client.get(f"/v1/studies/{sid}", headers=auth).json()
        return study["progress"]["by_status"]["running"] > 0

    wait_until(running, 60, "a member to run", poll=0.2)
    r = client.post(f"/v1/studies/{sid}/cancel", headers=auth)
    assert r.status_code == 202
    study = _wait(client, auth, sid, timeout=60)
    assert [m["status"] for m in study["members"]] == ["cancelled"] * 3
    assert study["status"] == "cancelled"
