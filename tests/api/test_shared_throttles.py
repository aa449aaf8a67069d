"""The failed-authentication limit across API processes: one count per address in Redis.

Two real API processes (uvicorn, as deployed) on one database and one Redis: wrong keys
sent to either count against one window, so an address meets the limit once in all, not
once per process. The in-process counter of the embedded mode is tested in
``tests/api/test_audit.py``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

import httpx
import pytest

from api.authfailures import RedisAuthFailures
from tests.factories import bearer, team_with_key
from tests.faults.services import Api

LIMIT = 3
BURST = 4


def _guess() -> dict[str, str]:
    return bearer(f"blv_{uuid.uuid4().hex[:8]}_{uuid.uuid4().hex}")


@pytest.fixture
def two_apis(pg_url, pg_sessions, redis_url, tmp_path):
    namespace = f"test{uuid.uuid4().hex[:8]}"
    env = {"DATABASE_URL": pg_url, "BROKER_URL": redis_url, "BILEVEL_QUEUE_PREFIX": namespace,
           "BILEVEL_AUTH_FAILURE_LIMIT": str(LIMIT),
           "BILEVEL_AUTH_FAILURE_WINDOW_S": "600",
           # a bucket of BURST requests, refilled too slowly to matter during the test
           "BILEVEL_RATE_LIMIT_PER_S": "0.01", "BILEVEL_RATE_LIMIT_BURST": str(BURST)}  # fmt: skip
    apis = [Api(env, tmp_path, name=f"api{i}") for i in range(2)]
    try:
        for api in apis:
            api.start(timeout=90)
        yield apis, namespace
    finally:
        for api in apis:
            api.stop()
        import redis

        store = redis.Redis.from_url(redis_url)
        store.delete(f"{namespace}:authfail:127.0.0.1")
        for key in store.scan_iter(f"{namespace}:ratelimit:*"):
            store.delete(key)


def test_an_address_gets_the_failed_auth_limit_once_across_two_api_processes(two_apis, pg_sessions):
    (a, b), _ = two_apis
    _, key = team_with_key(pg_sessions)
    with httpx.Client(timeout=30) as http:
        assert http.get(f"{a.url}/v1/jobs", headers=bearer(key)).status_code == 200
        # LIMIT wrong keys in all, spread over both processes (per process: under the limit)
        codes = [http.get(f"{api.url}/v1/jobs", headers=_guess()).status_code
                 for api in (a, b, a)]  # fmt: skip
        assert codes == [401] * LIMIT
        for api in (b, a):  # both now refuse the address, even with a right key
            r = http.get(f"{api.url}/v1/jobs", headers=bearer(key))
            assert r.status_code == 429, r.text
            assert r.json()["type"].endswith("auth-throttled")
            assert 1 <= int(r.headers["retry-after"]) <= 600


def test_a_keys_rate_limit_is_one_budget_across_two_api_processes(two_apis, pg_sessions):
    (a, b), _ = two_apis
    _, key = team_with_key(pg_sessions)
    with httpx.Client(timeout=30, headers=bearer(key)) as http:
        codes = [http.get(f"{api.url}/v1/jobs").status_code for api in (a, b) * (BURST // 2)]
        assert codes == [200] * BURST  # BURST in all; each process alone served BURST / 2
        for api in (a, b):
            r = http.get(f"{api.url}/v1/jobs")
            assert r.status_code == 429 and r.json()["type"].endswith("rate-limited")


def test_redis_counts_fail_open_when_redis_does_not_answer(caplog):
    async def run() -> int:
        failures = RedisAuthFailures("redis://127.0.0.1:1/0", 1, 60, timeout_s=0.2)
        await failures.afailed("198.51.100.1")
        failures._redis._down_until = 0.0  # try Redis again at once, not after the pause
        left = await failures.aretry_after("198.51.100.1")
        await failures.aclose()
        return left

    with caplog.at_level(logging.WARNING, logger="api.authfailures"):
        assert asyncio.run(run()) == 0
    assert "Redis unavailable" in caplog.text


def test_redis_counts_keep_a_fixed_window_per_address(redis_url):
    namespace = f"test{uuid.uuid4().hex[:8]}"

    async def run() -> list[int]:
        failures = RedisAuthFailures(redis_url, 2, 30, namespace=namespace)
        seen = []
        await failures.afailed("a")
        seen.append(await failures.aretry_after("a"))
        await failures.afailed("a")
        seen.append(await failures.aretry_after("a"))  # the rest of the window
        seen.append(await failures.aretry_after("b"))
        off = RedisAuthFailures(redis_url, 0, 30, namespace=namespace)
        seen.append(await off.aretry_after("a"))
        await failures.aclose()
        return seen

    try:
        first, blocked, other, off = asyncio.run(run())
    finally:
        import redis

        redis.Redis.from_url(redis_url).delete(f"{namespace}:authfail:a")
    assert first == 0 and 1 <= blocked <= 30 and other == 0 and off == 0
