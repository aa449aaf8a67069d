"""The API's key cache: a verified key costs no query for ``key_cache_ttl_s``, a revocation
takes effect within that bound (at once in the revoking process), and no plaintext is kept.
"""

from __future__ import annotations

import pickle
import random
import time

import pytest
from sqlalchemy import event

from jobs.keys import KeyCache
from jobs.specs.job import JobSpec
from jobs.store import repo
from jobs.store.models import Team
from tests.factories import bearer, key_operator, team_with_key, tiny_spec


@pytest.fixture
def statements(pg_sessions):
    """Every SQL statement the test's engine runs, in order (a SQLAlchemy event listener)."""
    engine = pg_sessions.kw["bind"]
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine, "before_cursor_execute", record)


def _auth_queries(statements: list[str]) -> list[str]:
    return [s for s in statements if "api_keys" in s or "teams" in s]


def test_a_cache_miss_is_one_query_and_a_hit_is_none(make_client, pg_sessions, statements):
    client = make_client(key_cache_ttl_s=60)
    team_id, key = team_with_key(pg_sessions)
    with pg_sessions.begin() as s:
        job, _ = repo.create_job(s, team_id, JobSpec.model_validate(tiny_spec()))
    statements.clear()
    assert client.get(f"/v1/jobs/{job.id}", headers=bearer(key)).status_code == 200
    # the key and its team in one join, then the job
    assert len(_auth_queries(statements)) == 1 and len(statements) == 2, statements
    statements.clear()
    for _ in range(3):
        assert client.get(f"/v1/jobs/{job.id}", headers=bearer(key)).status_code == 200
    assert _auth_queries(statements) == [] and len(statements) == 3, statements


def test_a_wrong_key_is_never_answered_from_the_cache(make_client, pg_sessions, statements):
    client = make_client(key_cache_ttl_s=60)
    _, key = team_with_key(pg_sessions)
    assert client.get("/v1/jobs", headers=bearer(key)).status_code == 200
    statements.clear()
    for wrong in (key[:-1] + ("A" if key[-1] != "A" else "B"), key + "x"):
        assert client.get("/v1/jobs", headers=bearer(wrong)).status_code == 401
    assert len(_auth_queries(statements)) == 2  # each checked against the store


def test_a_key_revoked_elsewhere_stops_working_within_the_ttl(make_client, pg_sessions):
    ttl = 0.5
    client = make_client(key_cache_ttl_s=ttl)
    _, key = team_with_key(pg_sessions)
    assert client.get("/v1/jobs", headers=bearer(key)).status_code == 200
    with pg_sessions.begin() as s:  # as `bilevel keys revoke` or another API process does
        prefix = key.split("_")[1]
        assert repo.revoke_api_key(s, prefix, actor=key_operator(s, prefix))
    revoked_at = time.monotonic()
    while client.get("/v1/jobs", headers=bearer(key)).status_code == 200:
        assert time.monotonic() - revoked_at < ttl + 0.5, "still accepted past the TTL"
        time.sleep(0.05)
    assert time.monotonic() - revoked_at <= ttl + 0.5


def test_a_key_revoked_through_the_api_stops_working_at_once(make_client, pg_sessions):
    client = make_client(key_cache_ttl_s=60)
    team_id, admin = team_with_key(pg_sessions, scope="admin")
    _, key = team_with_key(pg_sessions, _team_name(pg_sessions, team_id))
    assert client.get("/v1/jobs", headers=bearer(key)).status_code == 200  # now cached
    prefix = key.split("_")[1]
    assert client.delete(f"/v1/keys/{prefix}", headers=bearer(admin)).status_code == 200
    assert client.get("/v1/jobs", headers=bearer(key)).status_code == 401


def test_the_key_cache_never_holds_the_plaintext(make_client, pg_sessions):
    client = make_client(key_cache_ttl_s=60)
    _, key = team_with_key(pg_sessions)
    assert client.get("/v1/jobs", headers=bearer(key)).status_code == 200
    cache = client.app.state.key_cache
    assert len(cache) == 1
    dump = pickle.dumps(cache._entries) + repr(cache._entries).encode()
    secret_part = key.rsplit("_", 1)[1]
    assert key.encode() not in dump and secret_part.encode() not in dump


def test_a_ttl_of_zero_turns_the_cache_off(make_client, pg_sessions, statements):
    client = make_client(key_cache_ttl_s=0)
    _, key = team_with_key(pg_sessions)
    statements.clear()
    for _ in range(2):
        assert client.get("/v1/jobs", headers=bearer(key)).status_code == 200
    assert len([s for s in statements if "api_keys" in s]) == 2
    assert len(client.app.state.key_cache) == 0


def test_key_cache_entries_expire_and_the_least_recently_used_goes_first():
    now = [0.0]
    cache: KeyCache[str] = KeyCache(5.0, max_entries=2, clock=lambda: now[0])
    cache.put("d1", "p1", "one")
    cache.put("d2", "p2", "two")
    assert cache.get("d1") == "one"  # d1 is now the most recently used
    cache.put("d3", "p3", "three")
    assert cache.get("d2") is None and cache.get("d1") == "one" and cache.get("d3") == "three"
    now[0] = 5.0
    assert cache.get("d1") is None and len(cache) == 1
    cache.forget_prefix("p3")
    assert cache.get("d3") is None
    with pytest.raises(ValueError, match="ttl_s >= 0"):
        KeyCache(-1.0)


def _team_name(sessions, team_id) -> str:
    with sessions() as s:
        return s.get(Team, team_id).name


def test_keys_verified_together_expire_apart_and_never_past_the_ttl():
    now = [0.0]
    cache: KeyCache[str] = KeyCache(
        4.0, max_entries=100, clock=lambda: now[0], rng=random.Random(0)
    )
    for i in range(50):
        cache.put(f"d{i}", f"p{i}", "v")
    expiries: list[float] = []
    live = {f"d{i}" for i in range(50)}
    for step in range(1, 401):  # 0.01 s steps up to the ttl
        now[0] = step / 100
        gone = [d for d in live if cache.get(d) is None]
        live -= set(gone)
        expiries += [now[0]] * len(gone)
    # each lived between (1 - jitter) * ttl and the ttl, and they did not all go at once
    assert len(expiries) == 50 and len(cache) == 0
    assert min(expiries) >= 2.0 and max(expiries) <= 4.0
    assert max(expiries) - min(expiries) > 1.0
    exact: KeyCache[str] = KeyCache(4.0, clock=lambda: now[0], jitter=0.0)
    now[0] = 0.0
    exact.put("d", "p", "v")
    now[0] = 3.99
    assert exact.get("d") == "v"
    now[0] = 4.0
    assert exact.get("d") is None
    with pytest.raises(ValueError, match="jitter"):
        KeyCache(1.0, jitter=1.5)
