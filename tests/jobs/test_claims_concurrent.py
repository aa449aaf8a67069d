"""The concurrent claim on PostgreSQL (jobs.store.repo.claims): its invariants under load.

Many threads claiming at once must never take a job twice nor run a team past its limit;
one claimer alone must take jobs exactly in :func:`jobs.fairshare.pick_order`'s order.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError

from jobs.fairshare import Candidate, TeamLoad, pick_order
from jobs.specs.job import parse_spec
from jobs.store import repo
from jobs.store.models import Job, JobEvent
from jobs.store.repo import Policy
from jobs.store.repo.scheduling import lock_kind
from tests.factories import tiny_spec

POLICY = Policy(cpu_limit=4, preemption=False)
# name: (weight, own limit or None, jobs)
TEAMS = {"a": (3.0, None, 12), "b": (1.0, 2, 12), "c": (2.0, 3, 2), "d": (0.5, None, 12),
         "e": (1.0, 1, 12), "f": (5.0, 6, 12)}  # fmt: skip


def _teams(sessions: Any) -> dict[str, uuid.UUID]:
    """:data:`TEAMS` queued, one job at a time (ages differ); priorities vary by job."""
    with sessions.begin() as s:
        ids = {}
        for name, (weight, limit, _) in TEAMS.items():
            ids[name] = repo.ensure_team(s, name).id
            op = repo.Actor.operator(ids[name])
            repo.set_team_policy(s, name, actor=op, weight=weight, max_running_cpu=limit)
        for k in range(max(n for _, _, n in TEAMS.values())):
            for name, (_, _, n) in TEAMS.items():
                if k < n:
                    prio = ("low", "normal", "high")[(k * 7 + len(name)) % 3]
                    repo.create_job(s, ids[name], parse_spec(tiny_spec(priority=prio)))
    return ids


def _limit(name: str) -> int:
    own = TEAMS[name][1]
    return own if own is not None else POLICY.cpu_limit


def _claim(sessions: Any, worker: str) -> repo.Claim | bool:
    with sessions.begin() as s:
        return repo.claim_next(s, "cpu", worker, 30.0, POLICY)


def _running_by_team(s: Any) -> dict[uuid.UUID, int]:
    q = select(Job.team_id, func.count()).where(Job.status == "running").group_by(Job.team_id)
    return {t: int(n) for t, n in s.execute(q)}


def _claims_per_job(s: Any) -> Counter[uuid.UUID]:
    q = select(JobEvent.job_id).where(JobEvent.to_status == "running")
    return Counter(s.scalars(q))


def _threads(n: int, body: Any) -> list[str]:
    """Run ``body(i)`` in ``n`` threads started together; the errors they raised."""
    start, errors = threading.Barrier(n), []

    def run(i: int) -> None:
        start.wait()
        try:
            body(i)
        except Exception as exc:  # the test names it
            errors.append(f"{type(exc).__name__}: {exc}")

    ts = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    return errors


def test_threads_claiming_at_once_fill_every_team_to_its_limit_and_no_further(own_pg_sessions):
    ids = _teams(own_pg_sessions)
    got: list[repo.Claim] = []

    def claim_until_refused(i: int) -> None:
        while isinstance(c := _claim(own_pg_sessions, f"w{i}"), repo.Claim):
            got.append(c)

    assert _threads(12, claim_until_refused) == []
    while isinstance(c := _claim(own_pg_sessions, "late"), repo.Claim):  # a claim given up
        got.append(c)  # under contention is taken now: the pool ends full either way
    assert c is True  # queued jobs are left, every team holding them is at its limit
    with own_pg_sessions() as s:
        running = _running_by_team(s)
        per_job = _claims_per_job(s)
    assert {name: running.get(t, 0) for name, t in ids.items()} == {
        name: min(_limit(name), n) for name, (_, _, n) in TEAMS.items()
    }
    assert len({c.job_id for c in got}) == len(got) == sum(running.values())
    assert set(per_job.values()) == {1}
    assert all(c.attempt == 1 for c in got)


def test_claims_and_finishes_interleaved_never_run_a_team_past_its_limit(own_pg_sessions):
    """Threads claim and finish at once while a sampler reads the running counts."""
    ids = _teams(own_pg_sessions)
    limit_of = {t: _limit(name) for name, t in ids.items()}
    over: list[dict[uuid.UUID, int]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            with own_pg_sessions() as s:
                running = _running_by_team(s)
            if any(n > limit_of[t] for t, n in running.items()):
                over.append(running)

    def work(i: int) -> None:
        while isinstance(c := _claim(own_pg_sessions, f"w{i}"), repo.Claim):
            with own_pg_sessions.begin() as s:
                assert repo.finish_job(s, c, "succeeded")

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        errors = _threads(10, work)
    finally:
        done.set()
        sampler.join()
    assert errors == [] and over == []
    while isinstance(c := _claim(own_pg_sessions, "late"), repo.Claim):
        with own_pg_sessions.begin() as s:
            assert repo.finish_job(s, c, "succeeded")
    with own_pg_sessions() as s:
        by_status = dict(s.execute(select(Job.status, func.count()).group_by(Job.status)).all())
        per_job = _claims_per_job(s)
    assert by_status == {"succeeded": sum(n for _, _, n in TEAMS.values())}
    assert set(per_job.values()) == {1}


def _expected_order(sessions: Any, ids: dict[str, uuid.UUID]) -> list[uuid.UUID]:
    """The pure policy's order on the store's queue, up to the first pick past a limit."""
    names = {str(t): n for n, t in ids.items()}  # the store breaks ties by the team's id
    with sessions() as s:
        rows = s.execute(select(Job.id, Job.team_id, Job.priority, Job.created_at)).all()
    queued = [Candidate(i, str(t), p, at) for i, t, p, at in rows]
    loads = {str(ids[n]): TeamLoad(w, 0, _limit(n)) for n, (w, _, _) in TEAMS.items()}
    order, taken = [], Counter[str]()
    for c in pick_order(loads, queued):
        if taken[c.team] >= _limit(names[c.team]):
            break
        taken[c.team] += 1
        order.append(c.id)
    return order


def test_one_claimer_at_a_time_takes_the_jobs_in_the_pure_policys_order(own_pg_sessions):
    ids = _teams(own_pg_sessions)
    expected = _expected_order(own_pg_sessions, ids)
    taken = [_claim(own_pg_sessions, f"w{k}") for k in range(len(expected))]
    assert [c.job_id for c in taken if isinstance(c, repo.Claim)] == expected


def test_claims_of_two_teams_do_not_wait_for_each_other(own_pg_sessions):
    _teams(own_pg_sessions)
    with own_pg_sessions() as holder:
        mine = repo.claim_next(holder, "cpu", "w1", 30.0, POLICY)
        with own_pg_sessions.begin() as other:
            other.execute(text("SET LOCAL lock_timeout = '200ms'"))
            theirs = repo.claim_next(other, "cpu", "w2", 30.0, POLICY)
        holder.commit()
    assert isinstance(mine, repo.Claim) and isinstance(theirs, repo.Claim)
    with own_pg_sessions() as s:
        assert s.get(Job, mine.job_id).team_id != s.get(Job, theirs.job_id).team_id


def test_a_preemption_pass_waits_for_no_claim_in_flight_and_claims_wait_for_it(own_pg_sessions):
    _teams(own_pg_sessions)
    with own_pg_sessions() as passing:
        # what a pass that found victims holds until commit: the kind's lock, alone (a pass
        # that finds none takes no lock: test_scheduling's nothing-to-move test)
        lock_kind(passing, "cpu")
        with own_pg_sessions() as claiming:
            claiming.execute(text("SET lock_timeout = '200ms'"))
            with pytest.raises(OperationalError, match="lock timeout"):
                repo.claim_next(claiming, "cpu", "w1", 30.0, POLICY)
        passing.commit()
    assert isinstance(_claim(own_pg_sessions, "w1"), repo.Claim)


def test_a_claim_behind_one_in_flight_takes_the_same_teams_next_turn_not_a_later_team(
    own_pg_sessions,
):
    """Weights 3:1, one job each running: the next two picks are both the 3-team's.

    A claim that finds the 3-team's lock held (the first of those picks in flight) must wait
    for it and take the second pick, not pass over to the 1-team: that gave the 1-team two
    workers of four at 3:1 (the e2e weights test caught it).
    """
    with own_pg_sessions.begin() as s:
        alpha, beta = (repo.ensure_team(s, n).id for n in ("alpha", "beta"))
        repo.set_team_policy(s, "alpha", actor=repo.Actor.operator(alpha), weight=3.0)
        repo.create_job(s, beta, parse_spec(tiny_spec()))
    assert isinstance(_claim(own_pg_sessions, "w0"), repo.Claim)  # beta: 1 running
    with own_pg_sessions.begin() as s:
        for _ in range(4):
            repo.create_job(s, alpha, parse_spec(tiny_spec()))
            repo.create_job(s, beta, parse_spec(tiny_spec()))
    assert isinstance(_claim(own_pg_sessions, "w1"), repo.Claim)  # alpha: 1/3 below beta's 1
    with own_pg_sessions() as s:
        assert _running_by_team(s) == {alpha: 1, beta: 1}
    second: list[Any] = []
    with own_pg_sessions() as holder:
        first = repo.claim_next(holder, "cpu", "w2", 30.0, POLICY)  # holds alpha's lock
        other = threading.Thread(target=lambda: second.append(_claim(own_pg_sessions, "w3")))
        other.start()
        other.join(0.5)
        assert other.is_alive(), second  # waits for alpha's claim instead of taking beta's
        holder.commit()
    other.join(30)
    assert isinstance(first, repo.Claim) and isinstance(second[0], repo.Claim)
    with own_pg_sessions() as s:
        teams = [s.get(Job, c.job_id).team_id for c in (first, second[0])]
        assert teams == [alpha, alpha]
        assert _running_by_team(s) == {alpha: 3, beta: 1}
