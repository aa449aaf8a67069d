"""Store queries and transitions against real PostgreSQL."""

from __future__ import annotations

import math
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from jobs import parse_spec
from jobs.store import repo
from jobs.store.models import Job, JobEvent, utcnow
from tests.conftest import KEY_SECRET
from tests.factories import key_operator, team_with_key, tiny_spec


@pytest.fixture
def team(pg_sessions):
    team_id, key = team_with_key(pg_sessions)
    return team_id, key


def _submit(sessions, team_id, **kw):
    with sessions.begin() as s:
        job, _ = repo.create_job(s, team_id, parse_spec(tiny_spec()), **kw)
    return job


def test_keys_authenticate_until_revoked_and_only_the_hash_is_stored(pg_sessions, team):
    team_id, key = team
    secret = KEY_SECRET.encode()
    with pg_sessions() as s:
        assert repo.authenticate(s, key, secret=secret).id == team_id
        wrong = key[:-1] + ("x" if key[-1] != "x" else "y")
        assert repo.authenticate(s, wrong, secret=secret) is None
        assert repo.authenticate(s, "not-a-key", secret=secret) is None
        rows = repo.list_api_keys(s)
        stored = [k for k, _ in rows if key.startswith(f"blv_{k.prefix}_")]
        assert len(stored) == 1 and key not in stored[0].key_hash
    prefix = stored[0].prefix
    with pg_sessions.begin() as s:
        assert repo.revoke_api_key(s, prefix, actor=key_operator(s, prefix))
        assert not repo.revoke_api_key(s, prefix, actor=key_operator(s, prefix))
    with pg_sessions() as s:
        assert repo.authenticate(s, key, secret=secret) is None


def test_idempotency_key_returns_the_same_job_and_conflicts_on_another_spec(pg_sessions, team):
    team_id, _ = team
    a = _submit(pg_sessions, team_id, idempotency_key="k1")
    b = _submit(pg_sessions, team_id, idempotency_key="k1")
    assert a.id == b.id
    other = parse_spec(tiny_spec(iterations=21))
    with pg_sessions.begin() as s, pytest.raises(repo.IdempotencyConflict):
        repo.create_job(s, team_id, other, idempotency_key="k1")


def test_claim_is_conditional_so_a_duplicate_delivery_claims_nothing(pg_sessions, team):
    job = _submit(pg_sessions, team[0])
    with pg_sessions.begin() as s:
        first = repo.claim_job(s, job.id, "w1", 30)
    with pg_sessions.begin() as s:
        second = repo.claim_job(s, job.id, "w2", 30)
    assert first is not None and first.attempt == 1
    assert second is None
    with pg_sessions() as s:
        events = s.scalars(select(JobEvent.to_status).where(JobEvent.job_id == job.id)).all()
    assert events == ["queued", "running"]


def test_reaper_requeues_an_expired_lease_and_fences_the_old_attempt(pg_sessions, team):
    job = _submit(pg_sessions, team[0])
    with pg_sessions.begin() as s:
        claim = repo.claim_job(s, job.id, "w1", 30)
        s.execute(update(Job).where(Job.id == job.id).values(lease_until=utcnow() - timedelta(1)))
    with pg_sessions.begin() as s:
        requeued = repo.reap(s)
    assert job.id in {j.id for j in requeued}
    with pg_sessions.begin() as s:
        assert repo.heartbeat(s, claim, 30) == "lost"
        assert not repo.finish_job(s, claim, "succeeded")
        again = repo.claim_job(s, job.id, "w2", 30)
    assert again.attempt == 2


def test_reaper_fails_a_job_out_of_attempts(pg_sessions, team):
    with pg_sessions.begin() as s:
        job, _ = repo.create_job(s, team[0], parse_spec(tiny_spec()), max_attempts=1)
    with pg_sessions.begin() as s:
        repo.claim_job(s, job.id, "w1", 30)
        s.execute(update(Job).where(Job.id == job.id).values(lease_until=utcnow() - timedelta(1)))
    with pg_sessions.begin() as s:
        assert job.id not in {j.id for j in repo.reap(s)}
    with pg_sessions() as s:
        row = s.get(Job, job.id)
        assert row.status == "failed" and row.error["type"] == "LeaseExpired"


@pytest.mark.parametrize("max_attempts", [2, 1])
def test_a_lost_attempt_leaves_its_trace_and_iteration_agreeing(pg_sessions, team, max_attempts):
    # the worker wrote points 1..5 with its iteration, its checkpoint at 3, then was lost
    with pg_sessions.begin() as s:
        job, _ = repo.create_job(s, team[0], parse_spec(tiny_spec()), max_attempts=max_attempts)
    with pg_sessions.begin() as s:
        claim = repo.claim_job(s, job.id, "w1", 30)
        assert repo.heartbeat(s, claim, 30, iteration=5) == "ok"
        repo.write_trace(s, job.id, [{"iteration": i, "outer_loss": 1.0 / i} for i in range(1, 6)])
        repo.save_artifact(s, job.id, "checkpoint", b"state", iteration=3)
        s.execute(update(Job).where(Job.id == job.id).values(lease_until=utcnow() - timedelta(1)))
    with pg_sessions.begin() as s:
        repo.reap(s)
    with pg_sessions() as s:
        row = s.get(Job, job.id)
        last = repo.stored_iteration(s, job.id)
        columns = repo.trace_columns(s, job.id, fields=["outer_loss"])
    # requeued: it stands at its checkpoint, where it resumes; failed: at its last point
    assert (row.status, last) == (("queued", 3) if max_attempts == 2 else ("failed", 5))
    assert row.iteration == last and columns["iteration"] == list(range(1, last + 1))


def test_cancel_of_a_queued_job_is_immediate_and_of_a_running_one_is_a_request(pg_sessions, team):
    queued = _submit(pg_sessions, team[0])
    running = _submit(pg_sessions, team[0])
    with pg_sessions.begin() as s:
        claim = repo.claim_job(s, running.id, "w", 30)
    with pg_sessions.begin() as s:
        assert repo.cancel_job(s, repo.get_job(s, None, queued.id)).status == "cancelled"
        after = repo.cancel_job(s, repo.get_job(s, None, running.id))
        assert after.status == "running" and after.cancel_requested
    with pg_sessions.begin() as s:
        assert repo.heartbeat(s, claim, 30) == "cancel"


def test_list_is_newest_first_with_a_cursor_and_scoped_to_the_team(pg_sessions):
    team_a, _ = team_with_key(pg_sessions)
    team_b, _ = team_with_key(pg_sessions)
    ids = [_submit(pg_sessions, team_a).id for _ in range(5)]
    _submit(pg_sessions, team_b)
    seen, cursor = [], None
    with pg_sessions() as s:
        while True:
            page, cursor = repo.list_jobs(s, team_a, limit=2, cursor=cursor)
            seen += [j.id for j in page]
            if cursor is None:
                break
        assert seen == ids[::-1]
        assert repo.get_job(s, team_b, ids[0]) is None
        with pytest.raises(ValueError):
            repo.list_jobs(s, team_a, cursor="garbage!")


def test_trace_downsampling_keeps_extremes_first_last_and_bounds_the_count(pg_sessions, team):
    job = _submit(pg_sessions, team[0])
    n = 5000
    spikes = {1234: 50.0, 4321: -50.0}
    records = [
        {
            "iteration": i,
            "outer_loss": spikes.get(i, math.sin(i / 50)),
            "grad_norm": 1.0,
            "lr": 0.1,
            "time_s": 0.01,
            "cosine": float("nan"),
        }
        for i in range(1, n + 1)
    ]
    with pg_sessions.begin() as s:
        repo.write_trace(s, job.id, records)
    with pg_sessions() as s:
        full = repo.trace_columns(s, job.id)
        assert full["iteration"] == list(range(1, n + 1))
        assert all(c is None for c in full["cosine"])  # NaN is stored as NULL
        for max_points in (3, 10, 100, 1000):
            cols = repo.trace_columns(s, job.id, max_points=max_points, fields=["outer_loss"])
            it = cols["iteration"]
            assert len(it) <= max_points and it == sorted(set(it))
            assert it[0] == 1 and it[-1] == n
            if max_points >= 6:
                assert {1234, 4321} <= set(it)
        many = repo.trace_columns(s, job.id, max_points=200)
        assert len(many["iteration"]) <= 200 and {1234, 4321} <= set(many["iteration"])
        tail = repo.trace_columns(s, job.id, after=n - 10)
        assert tail["iteration"] == list(range(n - 9, n + 1))
        assert repo.trace_version(s, job.id, 0) == (n, n)


def test_trace_downsampling_works_on_sqlite_too(sqlite_sessions):
    team_id, _ = team_with_key(sqlite_sessions)
    job = _submit(sqlite_sessions, team_id)
    with sqlite_sessions.begin() as s:
        repo.write_trace(
            s,
            job.id,
            [{"iteration": i, "outer_loss": 100.0 if i == 77 else 1.0 / i} for i in range(1, 501)],
        )
    with sqlite_sessions() as s:
        cols = repo.trace_columns(s, job.id, max_points=20, fields=["outer_loss"])
    assert len(cols["iteration"]) <= 20 and 77 in cols["iteration"] and 500 in cols["iteration"]


def test_unknown_job_is_none(pg_sessions):
    with pg_sessions() as s:
        assert repo.get_job(s, None, uuid.uuid4()) is None


def test_stale_queued_jobs_are_resent_only_for_queues_the_broker_lost(pg_sessions, team):
    job = _submit(pg_sessions, team[0])
    with pg_sessions.begin() as s:
        s.execute(update(Job).where(Job.id == job.id).values(enqueued_at=utcnow() - timedelta(1)))
    with pg_sessions.begin() as s:
        backlog = repo.reap(s, requeue_queued_after_s=60, stale_queues=["gpu"])
        assert job.id not in {j.id for j in backlog}
        lost = repo.reap(s, requeue_queued_after_s=60, stale_queues=["cpu"])
        assert job.id in {j.id for j in lost}
    with pg_sessions() as s:  # resending restarts the clock
        assert job.id not in {j.id for j in repo.reap(s, requeue_queued_after_s=60)}


def test_downsampling_to_many_points_stays_within_bound_parameter_limits(sqlite_sessions):
    team_id, _ = team_with_key(sqlite_sessions)
    job = _submit(sqlite_sessions, team_id)
    n = 40_000
    with sqlite_sessions.begin() as s:
        repo.write_trace(
            s, job.id, [{"iteration": i, "outer_loss": math.sin(i)} for i in range(1, n + 1)]
        )
    with sqlite_sessions() as s:
        cols = repo.trace_columns(s, job.id, max_points=n - 1, fields=["outer_loss"])
    it = cols["iteration"]
    assert 30_000 < len(it) <= n - 1 and it == sorted(set(it))


@pytest.mark.parametrize("after", [0, 1, 100, 129])
def test_rolled_up_downsampling_keeps_the_true_extremes_of_every_bucket(
    pg_sessions, sqlite_sessions, after
):
    import random

    from jobs.store.models import TRACE_BLOCK

    rng = random.Random(after)
    n = 60 * TRACE_BLOCK + 17
    records = [
        {"iteration": i, "outer_loss": rng.gauss(0, 1), "grad_norm": float(rng.randint(0, 3)),
         "cosine": rng.random() if i % 7 == 0 else float("nan")}
        for i in range(1, n + 1)
    ]  # fmt: skip
    results = []
    for sessions in (pg_sessions, sqlite_sessions):
        team_id, _ = team_with_key(sessions)
        job = _submit(sessions, team_id)
        with sessions.begin() as s:
            for i in range(0, n, 500):  # in batches, as the runner writes them
                repo.write_trace(s, job.id, records[i : i + 500])
        with sessions() as s:
            fields = ["outer_loss", "grad_norm", "cosine"]
            cols = repo.trace_columns(s, job.id, after=after, max_points=100, fields=fields)
        results.append(cols)
        it = cols["iteration"]
        assert len(it) <= 100 and it[0] == after + 1 and it[-1] == n and it == sorted(set(it))
        for f in fields:
            values = [r[f] for r in records[after:] if r[f] == r[f]]
            kept = [v for v in cols[f] if v is not None]
            assert min(kept) == min(values) and max(kept) == max(values)
        # every kept row carries its own values
        loss = dict(zip(it, cols["outer_loss"]))
        assert all(loss[i] == records[i - 1]["outer_loss"] for i in it)
    assert results[0] == results[1]  # PostgreSQL and SQLite agree


def test_truncating_a_trace_recomputes_its_rollup(pg_sessions):
    from sqlalchemy import select as sel

    from jobs.store.models import trace_blocks

    team_id, _ = team_with_key(pg_sessions)
    a, b = _submit(pg_sessions, team_id), _submit(pg_sessions, team_id)
    records = [{"iteration": i, "outer_loss": math.cos(i)} for i in range(1, 1001)]
    with pg_sessions.begin() as s:
        repo.write_trace(s, a.id, records)
        repo.truncate_trace(s, a.id, 500)
        repo.write_trace(s, b.id, records[:500])

    def blocks(job_id):
        with pg_sessions() as s:
            rows = s.execute(
                sel(trace_blocks).where(trace_blocks.c.job_id == job_id).order_by("block")
            ).all()
        return [tuple(r)[1:] for r in rows]

    assert blocks(a.id) == blocks(b.id) and len(blocks(a.id)) == 8
