"""The pool view's places and estimates from counts, and ``/metrics``'s aggregates, checked
against the whole queue ranked and the rows read one by one (PostgreSQL and SQLite)."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from sqlalchemy import event, update

from jobs import fairshare
from jobs.queue_estimate import DEFAULT_RUN_S, FLUID_AHEAD_PER_WORKER
from jobs.specs.job import parse_spec
from jobs.store import repo
from jobs.store.models import Job, utcnow
from jobs.store.repo import Policy
from tests.factories import tiny_spec

POLICY = Policy(cpu_limit=4)


@pytest.fixture(params=["postgres", "sqlite"])
def sessions(request):
    return request.getfixturevalue(
        "own_pg_sessions" if request.param == "postgres" else "sqlite_sessions"
    )


def _fill(sessions, rng: random.Random) -> dict[str, object]:
    """Four teams of unequal weights and priorities, a few jobs running on live workers."""
    teams = {}
    with sessions.begin() as s:
        for name, weight in (("a", 3.0), ("b", 1.0), ("c", 1.0), ("d", 0.5)):
            team = repo.ensure_team(s, name)
            team.weight = weight
            teams[name] = team.id
            for _ in range(rng.randint(5, 40)):
                spec = tiny_spec(priority=rng.choice(["low", "normal", "high"]))
                repo.create_job(s, team.id, parse_spec(spec))
    for w in range(3):  # three busy workers, two idle ones
        with sessions.begin() as s:
            assert isinstance(repo.claim_next(s, "cpu", f"w{w}", 30.0, POLICY), repo.Claim)
    with sessions.begin() as s:
        for w in range(5):
            repo.beat_worker(s, f"w{w}", "cpu")
        # one queued job asked to cancel: in no count and no place
        s.execute(update(Job).where(Job.id == _any_queued(s, teams["b"]))
                  .values(cancel_requested=True))  # fmt: skip
    return teams


def _any_queued(s, team):
    return next(
        c.id for c in repo.queued_candidates(s, "cpu", per_team=None) if c.team == str(team)
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_each_teams_places_are_those_the_ranked_queue_gives_and_starts_those_of_list_scheduling(
    sessions, seed
):
    teams = _fill(sessions, random.Random(seed))
    with sessions() as s:  # the oracle: every queued job ranked, then list scheduling
        loads = repo.team_loads(s, "cpu", POLICY)
        order = fairshare.pick_order(loads, repo.queued_candidates(s, "cpu", per_team=None))
        since = [r.since for r, _, _ in repo.running_jobs(s, "cpu")]
        before = utcnow()
        views = {name: repo.pool_view(s, POLICY, tid) for name, tid in teams.items()}
        lag = (utcnow() - before).total_seconds()  # how far the running jobs' time left moved
    # no history: every job takes the default, a running one less the time it has run
    free = [DEFAULT_RUN_S - (before - at).total_seconds() for at in since] + [0.0, 0.0]
    starts = fairshare.estimated_starts(
        [c.id for c in order], free, dict.fromkeys([c.id for c in order], DEFAULT_RUN_S)
    )
    place = {c.id: p for p, c in enumerate(order, start=1)}
    for name, tid in teams.items():
        view = views[name]
        mine = [c.id for c in order if c.team == str(tid)]
        assert [q.id for q in view.queued] == mine
        assert [q.position for q in view.queued] == [place[i] for i in mine]
        kinds = {t.name: t.kinds["cpu"] for t in view.teams}
        assert kinds[name].queued == len(mine)
        for q in view.queued:
            assert q.estimated_start_s is not None
            exact = starts[q.id]
            if q.position - 1 <= FLUID_AHEAD_PER_WORKER * 3:
                assert q.estimated_start_s == pytest.approx(exact, abs=lag + 1e-6)
            else:
                assert abs(q.estimated_start_s - exact) <= DEFAULT_RUN_S / 2 + lag


def test_the_metrics_histograms_are_the_jobs_waits_and_run_times_counted_in_the_store(sessions):
    rng = random.Random(3)
    with sessions.begin() as s:
        team = repo.ensure_team(s, "alpha")
        ids = [repo.create_job(s, team.id, parse_spec(tiny_spec()))[0].id for _ in range(30)]
    t0 = utcnow() - timedelta(days=2)
    waits, runs = [], []
    with sessions.begin() as s:
        for i in ids[:25]:  # 25 started, 20 of them finished; 5 never started
            wait, run = rng.choice([0.5, 3.0, 70.0, 5000.0]), rng.choice([0.2, 30.0, 4000.0])
            started = t0 + timedelta(seconds=wait)
            done = started + timedelta(seconds=run) if len(waits) < 20 else None
            times = {"created_at": t0, "started_at": started, "running_since": started,
                     "finished_at": done}  # fmt: skip
            s.execute(update(Job).where(Job.id == i).values(**times))
            waits.append(wait)
            if done is not None:
                runs.append(run)
    buckets = (1.0, 60.0, 3600.0)
    with sessions() as s:
        got_waits, got_runs = repo.durations(s, buckets, buckets)
    for got, values in ((got_waits, waits), (got_runs, runs)):
        assert got.count == len(values) and got.total == pytest.approx(sum(values), abs=1e-3)
        assert got.buckets == tuple((b, sum(v <= b for v in values)) for b in buckets)


def test_a_refresh_places_the_teams_that_asked_during_the_last_reading(sessions):
    teams = _fill(sessions, random.Random(5))
    memo: dict[str, object] = {}
    with sessions() as s:
        first = repo.pool_view(s, POLICY, teams["b"], memo=memo, max_age_s=float("inf"))
        repo.refresh_pool_state(s, POLICY, memo)
        state = memo["pool"]
        # b's queued jobs are read and placed in the new reading before b asks again; the
        # others' are not, and b's next view reads nothing (no query on its request)
        placed = set(state.kinds["cpu"].shown)  # type: ignore[attr-defined]
        assert placed == {teams["b"]}
        statements: list[str] = []

        def record(conn, cursor, statement, *rest) -> None:
            statements.append(statement)

        event.listen(s.get_bind(), "before_cursor_execute", record)
        try:
            again = repo.pool_view(s, POLICY, teams["b"], memo=memo, max_age_s=float("inf"))
        finally:
            event.remove(s.get_bind(), "before_cursor_execute", record)
        assert statements == []
    assert [(q.id, q.position) for q in again.queued] == [(q.id, q.position) for q in first.queued]
