"""The dashboard's polls are cheap and still exact.

A job poll builds its body once per version of the job's row and its ETag is still the hash
of that body (a summary-only change, even 1 to 1.0, gives a new tag); a trace poll is one
statement; a key this process verified costs one Redis round trip per request, and an
address blocked for failed authentications spends no token of it.
"""

from __future__ import annotations

import hashlib
import inspect
import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, update

from api import ApiSettings, create_app
from api.routes import jobs as job_routes
from jobs.specs.job import JobSpec
from jobs.store import repo
from jobs.store.models import Job
from tests.factories import bearer, team_with_key, tiny_spec


def _tag(body: bytes) -> str:
    return f'W/"{hashlib.sha256(body).hexdigest()[:32]}"'


@pytest.fixture
def job_and_key(pg_sessions):
    team_id, key = team_with_key(pg_sessions)
    with pg_sessions.begin() as s:
        job, _ = repo.create_job(s, team_id, JobSpec.model_validate(tiny_spec()))
    return job.id, bearer(key)


def _set_summary(sessions, job_id, summary) -> None:
    # as a heartbeat does: the summary only, no updated_at (a Core UPDATE: the ORM would
    # skip writing {"loss": 1.0} over the equal {"loss": 1})
    with sessions.begin() as s:
        s.execute(update(Job).where(Job.id == job_id).values(summary=summary))


def test_a_job_poll_builds_its_body_once_per_row_and_tags_exactly_that_body(
    client, pg_sessions, job_and_key
):
    job_id, auth = job_and_key
    views = client.app.state.job_views
    r = client.get(f"/v1/jobs/{job_id}", headers=auth)
    assert r.status_code == 200 and r.headers["etag"] == _tag(r.content)
    for _ in range(3):
        again = client.get(
            f"/v1/jobs/{job_id}", headers={**auth, "If-None-Match": r.headers["etag"]}
        )
        assert again.status_code == 304 and again.headers["etag"] == r.headers["etag"]
    assert views.built == 1
    tags = {r.headers["etag"]}
    # 1 and 1.0 are equal numbers but the body prints them apart: each is a new version
    for summary in ({"loss": 1}, {"loss": 1.0}, {"loss": 1}):
        _set_summary(pg_sessions, job_id, summary)
        r2 = client.get(f"/v1/jobs/{job_id}", headers={**auth, "If-None-Match": r.headers["etag"]})
        assert r2.status_code == 200 and r2.headers["etag"] == _tag(r2.content)
        assert r2.json()["summary"] == summary and repr(r2.json()["summary"]["loss"]) == repr(
            summary["loss"]
        )
        tags.add(r2.headers["etag"])
        r = r2
    assert len(tags) == 3  # the first, {"loss": 1}, {"loss": 1.0}
    assert views.built == 4


def test_a_trace_poll_is_one_statement_and_another_teams_job_is_404(
    client, pg_sessions, job_and_key
):
    job_id, auth = job_and_key
    with pg_sessions.begin() as s:
        repo.write_trace(s, job_id, [{"iteration": i, "outer_loss": 1.0 / i} for i in (1, 2, 3)])
    url = f"/v1/jobs/{job_id}/trace?after=1"
    r = client.get(url, headers=auth)
    assert r.status_code == 200 and r.json()["iteration"] == [2, 3]
    engine = pg_sessions.kw["bind"]
    seen: list[str] = []

    def record(conn, cursor, statement, *args):
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        r2 = client.get(url, headers={**auth, "If-None-Match": r.headers["etag"]})
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert r2.status_code == 304 and r2.headers["x-trace-points"] == "2"
    assert len(seen) == 1, seen  # the job's team and attempt with the span
    _, other = team_with_key(pg_sessions)
    assert client.get(url, headers=bearer(other)).status_code == 404


def test_the_polled_routes_open_their_session_without_a_generator_dependency():
    # FastAPI enters each generator dependency in an exit stack per request: ~16% of a
    # poll's CPU (profiled), for a session the route can open and close itself
    def calls(dependant):
        yield dependant.call
        for sub in dependant.dependencies:
            yield from calls(sub)

    for path in ("/v1/jobs/{job_id}", "/v1/jobs/{job_id}/trace"):
        route = next(r for r in job_routes.router.routes
                     if getattr(r, "path", None) == path and "GET" in r.methods)  # fmt: skip
        generators = [
            c
            for c in calls(route.dependant)
            if inspect.isasyncgenfunction(c) or inspect.isgeneratorfunction(c)
        ]
        assert generators == [], (path, generators)


@pytest.fixture
def redis_app(pg_url, pg_sessions, redis_url, dispatcher):
    """An app with its throttles in Redis: a bucket of 10 that hardly refills, 2 failures."""
    import redis

    namespace = f"test{uuid.uuid4().hex[:8]}"
    settings = ApiSettings(
        database_url=pg_url, broker_url=redis_url, queue_prefix=namespace,
        rate_limit_per_s=0.001, rate_limit_burst=10, auth_failure_limit=2,
        key_cache_ttl_s=60,
    )  # fmt: skip
    with TestClient(create_app(settings, dispatcher=dispatcher, sessions=pg_sessions)) as c:
        yield c, namespace
    store = redis.Redis.from_url(redis_url)
    for key in store.scan_iter(f"{namespace}:*"):
        store.delete(key)


def test_a_verified_key_costs_one_redis_round_trip_and_a_blocked_address_no_token(
    redis_app, pg_sessions, job_and_key, redis_url, monkeypatch
):
    import redis
    import redis.asyncio

    client, namespace = redis_app
    job_id, auth = job_and_key
    assert client.get(f"/v1/jobs/{job_id}", headers=auth).status_code == 200  # now cached
    calls: list[tuple] = []
    original = redis.asyncio.Redis.execute_command

    async def counted(self, *args, **options):
        calls.append(args[:1])
        return await original(self, *args, **options)

    monkeypatch.setattr(redis.asyncio.Redis, "execute_command", counted)
    for _ in range(3):
        assert client.get(f"/v1/jobs/{job_id}", headers=auth).status_code == 200
    assert len(calls) == 3, calls  # one script per request: the failure check and the token
    prefix = auth["Authorization"].split("_")[1]
    bucket = f"{namespace}:ratelimit:{prefix}"
    tokens = float(redis.Redis.from_url(redis_url).hget(bucket, "tokens"))
    assert tokens == pytest.approx(6.0, abs=0.1)  # 10, less the 4 requests
    for _ in range(2):
        assert client.get("/v1/jobs", headers=bearer("blv_wrong_key")).status_code == 401
    r = client.get(f"/v1/jobs/{job_id}", headers=auth)
    assert r.status_code == 429 and r.json()["type"].endswith("auth-throttled")
    assert 1 <= int(r.headers["retry-after"]) <= 60
    after = float(redis.Redis.from_url(redis_url).hget(bucket, "tokens"))
    assert after == pytest.approx(tokens, abs=0.1)  # the blocked request took no token


def test_a_redis_that_accepts_but_never_answers_is_cut_off_and_the_limit_fails_open(caplog):
    import asyncio
    import logging
    import socket

    from api.ratelimit import RedisBuckets

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # the kernel completes connections; nothing ever reads or answers
    url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"

    async def run():
        buckets = RedisBuckets(url, 1.0, 1, timeout_s=0.2)
        # the bound on the whole call (api.redisconn.LoopRedis.run) ends it, not this guard
        decision = await asyncio.wait_for(buckets.atake("k"), 60)
        await buckets.aclose()
        return decision, buckets._redis.down()

    try:
        with caplog.at_level(logging.WARNING, logger="api.ratelimit"):
            decision, down = asyncio.run(run())
    finally:
        silent.close()
    assert decision.allowed and down
    assert "Redis unavailable" in caplog.text
