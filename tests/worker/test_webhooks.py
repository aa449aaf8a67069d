"""Webhooks end to end on the real store: registration, signed events, retries, failures.

A receiver is a real HTTP server on loopback (allowed through ``webhook_allow``, as only
tests do); the sender is ``worker.notify.notify_pass``, the pass a worker's thread runs.
"""

from __future__ import annotations

import json
import uuid

import pytest
from fastapi.testclient import TestClient

from api import ApiSettings, create_app
from jobs.status import JobStatus
from jobs.store import repo
from jobs.webhooks import WebhookURLError, check_url
from tests.factories import bearer, team_with_key, tiny_spec
from tests.webhook_receiver import Receiver, verify_signature
from worker.notify import notify_pass
from worker.settings import WorkerSettings

LOOPBACK = ["127.0.0.0/8"]


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def admin(pg_url, pg_sessions):
    team_id, key = team_with_key(pg_sessions, scope="admin")
    settings = ApiSettings(database_url=pg_url, broker_url=None, webhook_allow=LOOPBACK)

    class _Dispatcher:
        def send(self, job_id, queue):
            pass

        def ping(self):
            return True

    app = create_app(settings, dispatcher=_Dispatcher(), sessions=pg_sessions)
    with TestClient(app) as c:
        yield c, bearer(key), team_id
    with pg_sessions.begin() as s:  # other tests' passes must not send to this one's hooks
        for hook in repo.list_webhooks(s, team_id):
            repo.revoke_webhook(s, hook, actor=repo.Actor.operator(team_id))


def _finish(sessions, job_id, status):
    with sessions.begin() as s:
        claim = repo.claim_job(s, job_id, "w:1", 60)
    with sessions.begin() as s:
        assert repo.finish_job(s, claim, status, summary={"final_outer_loss": 0.5})


def _settings(**over):
    return WorkerSettings(webhook_allow=LOOPBACK, webhook_backoff_s=0, **over)


def test_one_signed_event_per_terminal_state(admin, receiver, pg_sessions):
    client, auth, _ = admin
    r = client.post("/v1/webhooks", json={"url": receiver.url}, headers=auth)
    assert r.status_code == 201, r.text
    hook = r.json()
    secret = hook["secret"]
    assert "secret" not in client.get("/v1/webhooks", headers=auth).json()["data"][0]
    job = client.post("/v1/jobs", json=tiny_spec(), headers=auth).json()
    _finish(pg_sessions, uuid.UUID(job["id"]), JobStatus.SUCCEEDED)
    settings = _settings()
    assert notify_pass(pg_sessions, settings) == 1
    assert notify_pass(pg_sessions, settings) == 0  # nothing twice
    [(headers, body)] = receiver.requests
    assert verify_signature(secret, headers, body)
    assert not verify_signature(secret, headers, body + b" ")
    event = json.loads(body)
    assert event["type"] == headers["Bilevel-Event"] == "job.succeeded"
    assert event["data"]["job"]["id"] == job["id"]
    assert event["id"] == headers["Bilevel-Delivery"]
    deliveries = client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=auth).json()
    assert [(d["status"], d["attempts"], d["response_status"]) for d in deliveries["data"]] == [
        ("delivered", 1, 204)
    ]


def test_a_study_sends_its_members_events_then_its_own(admin, receiver, pg_sessions):
    client, auth, _ = admin
    client.post("/v1/webhooks", json={"url": receiver.url}, headers=auth)
    body = {"name": "s", "base": tiny_spec(), "grid": {"seed": [0, 1]}}
    study = client.post("/v1/studies", json=body, headers=auth).json()
    first, second = (uuid.UUID(m["job_id"]) for m in study["members"])
    _finish(pg_sessions, first, JobStatus.SUCCEEDED)
    notify_pass(pg_sessions, _settings())
    assert [h["Bilevel-Event"] for h, _ in receiver.requests] == ["job.succeeded"]
    _finish(pg_sessions, second, JobStatus.FAILED)
    notify_pass(pg_sessions, _settings())
    types = sorted(h["Bilevel-Event"] for h, _ in receiver.requests)
    assert types == ["job.failed", "job.succeeded", "study.failed"]


def test_a_failing_receiver_gets_retries_then_a_recorded_failure(admin, pg_sessions):
    client, auth, _ = admin
    failing = Receiver(status=500)
    try:
        hook = client.post("/v1/webhooks", json={"url": failing.url}, headers=auth).json()
        job = client.post("/v1/jobs", json=tiny_spec(), headers=auth).json()
        _finish(pg_sessions, uuid.UUID(job["id"]), JobStatus.CANCELLED)
        settings = _settings(webhook_max_attempts=3)
        for _ in range(5):
            notify_pass(pg_sessions, settings)
        assert len(failing.requests) == 3
        # the same event every time: one id, a receiver can dedupe
        assert len({h["Bilevel-Delivery"] for h, _ in failing.requests}) == 1
        [d] = client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=auth).json()["data"]
        assert (d["status"], d["attempts"], d["response_status"]) == ("failed", 3, 500)
        assert d["last_error"] == "HTTP 500"
    finally:
        failing.close()


def test_retries_wait_a_doubling_backoff(admin, pg_sessions):
    client, auth, _ = admin
    failing = Receiver(status=503)
    try:
        client.post("/v1/webhooks", json={"url": failing.url}, headers=auth)
        job = client.post("/v1/jobs", json=tiny_spec(), headers=auth).json()
        _finish(pg_sessions, uuid.UUID(job["id"]), JobStatus.SUCCEEDED)
        settings = WorkerSettings(webhook_allow=LOOPBACK, webhook_backoff_s=3600)
        for _ in range(3):
            notify_pass(pg_sessions, settings)
        assert len(failing.requests) == 1  # the retry is an hour away
    finally:
        failing.close()


@pytest.mark.parametrize("url", ["http://10.1.2.3/hook", "http://169.254.169.254/latest",
                                 "ftp://127.0.0.1/x", "http://user:pw@127.0.0.1/x"])  # fmt: skip
def test_a_url_outside_the_allowed_addresses_is_refused_at_registration(admin, url):
    client, auth, _ = admin
    r = client.post("/v1/webhooks", json={"url": url}, headers=auth)
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "url"
    assert url in r.json()["detail"]


def test_registering_needs_an_admin_key(admin, pg_sessions, receiver):
    client, _, _ = admin
    _, key = team_with_key(pg_sessions)
    r = client.post("/v1/webhooks", json={"url": receiver.url}, headers=bearer(key))
    assert r.status_code == 403


def test_a_host_name_must_resolve_only_into_allowed_networks():
    def resolve(host):
        return ["127.0.0.1", "10.0.0.5"]

    with pytest.raises(WebhookURLError, match="outside the allowed addresses"):
        check_url("http://mixed.example/hook", LOOPBACK, resolve)
    assert check_url("http://ok.example/h", LOOPBACK, lambda h: ["127.0.0.2"])
    assert check_url("https://hooks.example/h", ["hooks.example"], lambda h: ["10.0.0.5"])


def test_with_no_allowed_address_every_url_is_refused():
    with pytest.raises(WebhookURLError, match="webhook_allow is empty"):
        check_url("http://127.0.0.1/h", [])


def test_a_deleted_webhook_gets_nothing_more(admin, receiver, pg_sessions):
    client, auth, _ = admin
    hook = client.post("/v1/webhooks", json={"url": receiver.url}, headers=auth).json()
    r = client.delete(f"/v1/webhooks/{hook['id']}", headers=auth)
    assert r.status_code == 200
    assert r.json()["revoked_at"] is not None
    job = client.post("/v1/jobs", json=tiny_spec(), headers=auth).json()
    _finish(pg_sessions, uuid.UUID(job["id"]), JobStatus.SUCCEEDED)
    notify_pass(pg_sessions, _settings())
    assert receiver.requests == []
    assert client.get("/v1/webhooks", headers=auth).json()["count"] == 0
