"""The fair-share claim in the store (jobs.store.repo.scheduling), on PostgreSQL and SQLite."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import OperationalError

from jobs.specs.job import parse_spec
from jobs.store import repo
from jobs.store.models import Job, JobEvent, utcnow
from jobs.store.repo import LeaseState, Policy
from jobs.store.repo.scheduling import kind_lock_key
from tests.factories import tiny_spec

POLICY = Policy(preempt_min_run_s=60.0)


@pytest.fixture(params=["postgres", "sqlite"])
def sessions(request):
    return request.getfixturevalue(
        "own_pg_sessions" if request.param == "postgres" else "sqlite_sessions"
    )


def _team(sessions, name: str, n: int, **spec_over) -> list[uuid.UUID]:
    with sessions.begin() as s:
        team = repo.ensure_team(s, name)
        return [repo.create_job(s, team.id, parse_spec(tiny_spec(**spec_over)))[0].id
                for _ in range(n)]  # fmt: skip


def _claim(sessions, worker: str = "w", policy: Policy = POLICY):
    with sessions.begin() as s:
        return repo.claim_next(s, "cpu", worker, 30.0, policy)


def _running(sessions) -> dict[str, int]:
    with sessions() as s:
        return {t: load.running for t, load in repo.team_loads(s, "cpu", POLICY).items()}


def test_weights_3_to_1_hold_the_running_shares_at_3_to_1_while_both_are_backlogged(sessions):
    """Four workers; each time the oldest running job ends, the freed worker claims again."""
    alpha = _team(sessions, "alpha", 40)
    _team(sessions, "beta", 40)
    with sessions.begin() as s:
        op = repo.Actor.operator(repo.team_by_name(s, "alpha").id)
        repo.set_team_policy(s, "alpha", actor=op, weight=3.0)
        ids = {str(repo.team_by_name(s, n).id): n for n in ("alpha", "beta")}
    held = [_claim(sessions, f"w{i}") for i in range(4)]
    shares = []
    for step in range(30):
        counts = {ids[t]: n for t, n in _running(sessions).items()}
        shares.append((counts.get("alpha", 0), counts.get("beta", 0)))
        done = held.pop(0)
        with sessions.begin() as s:
            assert repo.finish_job(s, done, "succeeded")
        held.append(_claim(sessions, f"w{step % 4}"))
    # at every step of the window: 3 alpha and 1 beta running (the weighted share, exactly)
    assert set(shares) == {(3, 1)}, shares
    with sessions() as s:
        alpha_done = s.scalar(select(Job.id).where(Job.id.in_(alpha), Job.status == "succeeded"))
    assert alpha_done is not None


def test_a_high_priority_job_is_claimed_before_its_teams_older_normal_ones(sessions):
    normal = _team(sessions, "gamma", 3)
    high = _team(sessions, "gamma", 1, priority="high")[0]
    assert _claim(sessions).job_id == high
    assert _claim(sessions).job_id == normal[0]


def test_a_team_below_its_share_is_claimed_first_though_it_queued_last(sessions):
    alpha = _team(sessions, "alpha", 5)
    assert _claim(sessions, "w1").job_id == alpha[0]
    beta = _team(sessions, "beta", 1)
    assert _claim(sessions, "w2").job_id == beta[0]


def test_a_team_limit_set_by_an_admin_holds_and_a_bad_one_is_refused(sessions):
    _team(sessions, "alpha", 3)
    with sessions.begin() as s:
        op = repo.Actor.operator(repo.team_by_name(s, "alpha").id)
        repo.set_team_policy(s, "alpha", actor=op, max_running_cpu=1)
        with pytest.raises(ValueError, match="max_running_cpu must be >= 1, got 0"):
            repo.set_team_policy(s, "alpha", actor=op, max_running_cpu=0)
        with pytest.raises(ValueError, match="weight must be > 0, got -1"):
            repo.set_team_policy(s, "alpha", actor=op, weight=-1.0)
        assert repo.set_team_policy(s, "nobody", actor=op, weight=2.0) is None
    assert isinstance(_claim(sessions), repo.Claim)
    assert _claim(sessions) is True  # queued, but the team is at its limit


def test_preemption_asks_the_newest_over_share_job_and_its_release_keeps_the_attempt(sessions):
    alpha = _team(sessions, "alpha", 3)
    claims = [_claim(sessions, f"w{i}") for i in range(2)]
    old = utcnow() - timedelta(seconds=120)
    with sessions.begin() as s:
        for i, c in enumerate(claims):  # both ran long enough; w1's started last
            s.execute(update(Job).where(Job.id == c.job_id)
                      .values(running_since=old + timedelta(seconds=i)))  # fmt: skip
            repo.beat_worker(s, f"w{i}", "cpu")
    beta = _team(sessions, "beta", 1)
    with sessions.begin() as s:
        assert repo.request_preemptions(s, "cpu", POLICY) == [claims[1].job_id]
    with sessions.begin() as s:  # one at a time: nothing more while that one is leaving
        assert repo.request_preemptions(s, "cpu", POLICY) == []
        assert repo.heartbeat(s, claims[1], 30.0) == LeaseState.PREEMPT
        assert repo.heartbeat(s, claims[0], 30.0) == LeaseState.OK
        before = s.get(Job, claims[1].job_id).max_attempts
    with sessions.begin() as s:
        assert repo.release_job(s, claims[1])
    with sessions() as s:
        job = s.get(Job, claims[1].job_id)
        assert (job.status, job.max_attempts - job.attempts) == ("queued", before - 0)
        event = s.scalars(select(JobEvent).where(JobEvent.job_id == job.id)
                          .order_by(JobEvent.id.desc())).first()  # fmt: skip
        assert event.detail == {"reason": "preempted"}
        assert repo.preemption_count(s) == 1
    assert _claim(sessions, "w1").job_id == beta[0]  # the freed worker goes to beta
    with sessions.begin() as s:  # 1:1 now; beta's job is young: nothing to move
        assert repo.request_preemptions(s, "cpu", POLICY) == []
    assert claims[1].job_id in alpha


def test_no_preemption_when_it_is_turned_off_or_a_worker_is_idle(sessions):
    _team(sessions, "alpha", 3)
    claims = [_claim(sessions, f"w{i}") for i in range(2)]
    with sessions.begin() as s:
        s.execute(update(Job).where(Job.status == "running")
                  .values(running_since=utcnow() - timedelta(seconds=120)))  # fmt: skip
        for i in range(3):  # a third worker is alive and idle
            repo.beat_worker(s, f"w{i}", "cpu")
    _team(sessions, "beta", 1)
    with sessions.begin() as s:
        assert repo.request_preemptions(s, "cpu", POLICY) == []
        repo.drop_worker(s, "w2")
        assert repo.request_preemptions(s, "cpu", Policy(preemption=False)) == []
        assert len(repo.request_preemptions(s, "cpu", POLICY)) == 1
    assert len(claims) == 2


def test_claims_of_one_kind_are_serialised_until_commit(own_pg_sessions):
    """Two workers claiming at once: the second waits for the first's commit."""
    _team(own_pg_sessions, "alpha", 2)
    with own_pg_sessions() as holder:
        assert isinstance(repo.claim_next(holder, "cpu", "w1", 30.0, POLICY), repo.Claim)
        with own_pg_sessions() as other:
            other.execute(text("SET lock_timeout = '200ms'"))
            with pytest.raises(OperationalError, match="lock timeout"):
                repo.claim_next(other, "cpu", "w2", 30.0, POLICY)
        holder.commit()
    assert isinstance(_claim(own_pg_sessions, "w2"), repo.Claim)


def test_a_pass_with_nothing_to_move_reads_team_counts_and_leaves_the_claims_running(
    own_pg_sessions,
):
    """200 workers pass every reap_every_s: the usual pass must not stop the kind's claims.

    A backlog of 300 queued jobs and a fair pool: the pass reads a count per team, not the
    queue's rows, and decides "nothing" without the kind's lock (held alone here by another
    transaction, as a pass in flight would). Only a pass that finds victims waits for it.
    """
    from sqlalchemy import event

    _team(own_pg_sessions, "alpha", 300)
    claims = [_claim(own_pg_sessions, f"w{i}") for i in range(2)]
    with own_pg_sessions.begin() as s:
        s.execute(update(Job).where(Job.status == "running")
                  .values(running_since=utcnow() - timedelta(seconds=120)))  # fmt: skip
        for i in range(2):
            repo.beat_worker(s, f"w{i}", "cpu")
    rows: list[int] = []
    engine = own_pg_sessions.kw["bind"]

    def count(conn, cursor, statement, params, context, executemany):
        if statement.lstrip().upper().startswith("SELECT"):
            rows.append(cursor.rowcount)

    event.listen(engine, "after_cursor_execute", count)
    try:
        with own_pg_sessions() as holder:
            holder.execute(text("SELECT pg_advisory_xact_lock(:k)"),
                           {"k": kind_lock_key("cpu")})  # fmt: skip
            with own_pg_sessions.begin() as s:
                s.execute(text("SET LOCAL lock_timeout = '200ms'"))
                assert repo.request_preemptions(s, "cpu", POLICY) == []  # no lock timeout
            assert 0 < sum(rows) < 20, rows  # two running jobs, one team, two workers
            _team(own_pg_sessions, "beta", 1)  # now alpha holds both workers, beta waits
            with own_pg_sessions.begin() as s:
                s.execute(text("SET LOCAL lock_timeout = '200ms'"))
                with pytest.raises(OperationalError, match="lock timeout"):
                    repo.request_preemptions(s, "cpu", POLICY)
            holder.commit()
    finally:
        event.remove(engine, "after_cursor_execute", count)
    with own_pg_sessions.begin() as s:  # the lock free, the same pass asks one to yield
        victims = repo.request_preemptions(s, "cpu", POLICY)
    assert len(victims) == 1 and victims[0] in {c.job_id for c in claims}


def test_the_live_workers_take_the_preemption_decision_in_turns(sessions):
    """One decision a period for the pool: over n slots each of n live workers decides once."""
    with sessions.begin() as s:
        for name in ("w-b", "w-a", "w-c"):
            repo.beat_worker(s, name, "cpu")
        repo.beat_worker(s, "g-1", "gpu")
    period = 10.0
    with sessions() as s:
        turns = [[name for name in ("w-a", "w-b", "w-c")
                  if repo.takes_pass_turn(s, "cpu", name, POLICY, period, at=t)]
                 for t in (1000.0 + period * k + 3.0 for k in range(6))]  # fmt: skip
        # slot 100 is w-b's (100 % 3 == 1 in name order), then w-c's, w-a's, and round again
        assert turns == [["w-b"], ["w-c"], ["w-a"], ["w-b"], ["w-c"], ["w-a"]]
        # a worker the store lists under another kind decides each time, as before
        assert all(repo.takes_pass_turn(s, "cpu", "g-1", POLICY, period, at=1000.0 + k)
                   for k in range(3))  # fmt: skip
