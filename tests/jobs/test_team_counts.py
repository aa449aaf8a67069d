"""``job_team_counts`` (migration 0023) against the jobs it counts, and the snapshot it feeds.

Ground truth is a ``GROUP BY`` over ``jobs``: after every step of random scripts of the
repository's real writes (submissions one by one and as a study, claims with and without a
hint, heartbeats, finishes, releases, cancels of queued and running jobs, a study's cancel,
the reaper's requeue, a crashed process, preemption requests) and of the tools' raw ones
(delete, a move between teams and queues, truncate) the table must equal it. The claim's
snapshot over the table must give 0020's arrays, kept here as the reference query.
"""

from __future__ import annotations

import random
import uuid
from typing import Any

from alembic import command
from sqlalchemy import create_engine, select, text, update

from jobs.specs.job import parse_spec
from jobs.status import JobStatus, QueueKind
from jobs.store import repo
from jobs.store.db import normalize_url
from jobs.store.models import Job
from jobs.store.repo import Policy, claims
from jobs.studies.grid import expand
from migrations import alembic_config
from tests.factories import table_names, tiny_spec

LEASE_S = 30.0
POLICY = Policy(cpu_limit=3, gpu_limit=2, preemption=True, preempt_min_run_s=0.0)
KINDS = (QueueKind.CPU, QueueKind.GPU)

_TRUTH = text(
    "SELECT queue, team_id, count(*) FILTER (WHERE status = :queued AND NOT cancel_requested),"
    " count(*) FILTER (WHERE status = :running) FROM jobs GROUP BY queue, team_id"
)
_TABLE = text("SELECT queue, team_id, queued, running FROM job_team_counts")

# 0020's snapshot, the reference: a probe of each team's queue head and the running jobs
_SNAPSHOT_0020 = text("""
  SELECT t.id, coalesce(t.weight, :weight),
         coalesce(r.n, 0)::integer, q.n::integer,
         coalesce(CASE WHEN :gpu THEN t.max_running_gpu ELSE t.max_running_cpu END, :lim)
  FROM teams t
  JOIN LATERAL (
    SELECT count(*) AS n FROM (
      SELECT 1 FROM jobs h
      WHERE h.team_id = t.id AND h.queue = :kind AND h.status = :queued
        AND h.cancel_requested = false
      ORDER BY h.priority DESC, h.created_at, h.id
      LIMIT :heads) AS head) AS q ON q.n > 0
  LEFT JOIN (
    SELECT j.team_id, count(*) AS n FROM jobs j
    WHERE j.queue = :kind AND j.status = :running GROUP BY j.team_id) AS r
    ON r.team_id = t.id
""")
_SNAPSHOT = text(
    "SELECT ids, weights, running, queued, limits FROM bilevel_claim_snapshot(CAST(:kind AS"
    " text), CAST(:weight AS float8), CAST(:lim AS integer), :gpu, CAST(:heads AS integer))"
)
_STATES = {"queued": JobStatus.QUEUED, "running": JobStatus.RUNNING}


def _nonzero(rows: Any) -> dict[tuple[str, uuid.UUID], tuple[int, int]]:
    return {(q, t): (a, b) for q, t, a, b in rows if (a, b) != (0, 0)}


def _check_counts(s: Any, where: str) -> None:
    truth = _nonzero(s.execute(_TRUTH, _STATES))
    table = _nonzero(s.execute(_TABLE))
    assert table == truth, where


def _check_snapshot(s: Any, rng: random.Random, where: str) -> None:
    for kind in KINDS:
        params = {"kind": str(kind), "weight": rng.choice([0.5, 1.0, 2.0]),
                  "lim": rng.choice([1, 3, 50]), "gpu": rng.random() < 0.5,
                  "heads": rng.choice([1, 2, claims.HEADS, 7])}  # fmt: skip
        expected = sorted(tuple(r) for r in s.execute(_SNAPSHOT_0020, {**params, **_STATES}))
        got = s.execute(_SNAPSHOT, params).one()
        rows = sorted(zip(*got, strict=True)) if got.ids is not None else []
        assert rows == expected, (where, kind)


def _spec(rng: random.Random) -> Any:
    device = "cuda" if rng.random() < 0.3 else "cpu"
    return parse_spec(tiny_spec(iterations=rng.choice([5, 10]), device=device))


class _Script:
    """One random script of the store's writes; ``claims`` are the live ones."""

    def __init__(self, sessions: Any, rng: random.Random) -> None:
        self.sessions, self.rng = sessions, rng
        self.claims: list[repo.Claim] = []
        with sessions.begin() as s:
            self.teams = [repo.ensure_team(s, f"t{k}").id for k in range(4)]
            repo.set_team_policy(s, "t1", actor=repo.Actor.operator(self.teams[1]), weight=3.0,
                                 max_running_cpu=1)  # fmt: skip

    def _ids(self, s: Any, status: str) -> list[uuid.UUID]:
        return list(s.scalars(select(Job.id).where(Job.status == status).order_by(Job.id)))

    def submit(self, s: Any) -> None:
        repo.create_job(s, self.rng.choice(self.teams), _spec(self.rng))

    def study(self, s: Any) -> None:
        grid = {"outer.lr": [0.01, 0.02, 0.05][: self.rng.randint(1, 3)], "inner.steps": [5, 10]}
        base = tiny_spec(iterations=5, device=self.rng.choice(["cpu", "cuda"]))
        expansion = expand(base, grid, max_members=20, name="sweep")
        repo.create_study(s, self.rng.choice(self.teams), name="sweep", base=base, grid=grid,
                          group_by=[], expansion=expansion)  # fmt: skip

    def claim(self, s: Any) -> None:
        queued = self._ids(s, JobStatus.QUEUED)
        hint = self.rng.choice(queued) if queued and self.rng.random() < 0.3 else None
        got = repo.claim_next(s, self.rng.choice(KINDS), f"w{self.rng.randrange(99)}", LEASE_S,
                              POLICY, hint=hint)  # fmt: skip
        if isinstance(got, repo.Claim):
            self.claims.append(got)

    def beat(self, s: Any) -> None:
        if self.claims:
            records = [{"iteration": 1, "outer_loss": 1.0}]
            repo.heartbeat_with_trace(s, self.rng.choice(self.claims), LEASE_S, records,
                                      iteration=1, eta_s=2.0)  # fmt: skip

    def finish(self, s: Any) -> None:
        if self.claims:
            claim = self.claims.pop(self.rng.randrange(len(self.claims)))
            status = self.rng.choice([JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED,
                                      JobStatus.QUEUED])  # fmt: skip
            repo.finish_with_trace(s, claim, status, [{"iteration": 2, "outer_loss": 0.5}])

    def release(self, s: Any) -> None:
        if self.claims:
            repo.release_job(s, self.claims.pop(self.rng.randrange(len(self.claims))))

    def crash(self, s: Any) -> None:
        if self.claims:
            repo.requeue_crashed(s, self.claims.pop(self.rng.randrange(len(self.claims))), -9)

    def cancel(self, s: Any) -> None:
        live = self._ids(s, JobStatus.QUEUED) + self._ids(s, JobStatus.RUNNING)
        if live:
            repo.cancel_job(s, s.get(Job, self.rng.choice(live)))

    def ask_cancel(self, s: Any) -> None:
        """A cancel asked of a queued job that a claim takes before it ends it (the race)."""
        queued = self._ids(s, JobStatus.QUEUED)
        if queued:
            s.execute(update(Job).where(Job.id == self.rng.choice(queued))
                      .values(cancel_requested=True))  # fmt: skip

    def cancel_study(self, s: Any) -> None:
        studies = [st for t in self.teams for st in repo.list_studies(s, t)]
        if studies:
            repo.cancel_study(s, self.rng.choice(studies))

    def expire(self, s: Any) -> None:
        """Leases that ran out (their workers died): the reaper's next pass takes them."""
        running = self._ids(s, JobStatus.RUNNING)
        lost = self.rng.sample(running, k=min(len(running), self.rng.randint(1, 3)))
        for job_id in sorted(lost):  # in id order, as a study's cancel locks its members
            s.execute(update(Job).where(Job.id == job_id).values(lease_until=Job.created_at))

    def reap(self, s: Any) -> None:
        repo.reap(s, requeue_queued_after_s=self.rng.choice([None, 0.0]))

    def preempt(self, s: Any) -> None:
        for kind in KINDS:
            repo.request_preemptions(s, kind, POLICY)

    def delete(self, s: Any) -> None:
        live = self._ids(s, JobStatus.QUEUED) + self._ids(s, JobStatus.RUNNING)
        if live:
            s.execute(text("DELETE FROM jobs WHERE id = :j"), {"j": self.rng.choice(live)})

    def move(self, s: Any) -> None:
        live = self._ids(s, JobStatus.QUEUED) + self._ids(s, JobStatus.RUNNING)
        if live:
            s.execute(
                update(Job)
                .where(Job.id == self.rng.choice(live))
                .values(team_id=self.rng.choice(self.teams), queue=self.rng.choice(KINDS))
            )

    STEPS = ("submit", "submit", "study", *["claim"] * 6, "beat", "beat", "finish",
             "release", "crash", "cancel", "ask_cancel", "cancel_study", "expire", "reap",
             "preempt", "delete", "move")  # fmt: skip

    def run(self, steps: int) -> None:
        for k in range(steps):
            step = self.rng.choice(self.STEPS)
            with self.sessions.begin() as s:
                getattr(self, step)(s)
            with self.sessions() as s:
                _check_counts(s, f"step {k}: {step}")
                if k % 5 == 0:
                    _check_snapshot(s, self.rng, f"step {k}: {step}")
            # a claim whose lease moved on (reaped, deleted, moved) is gone for the script
            with self.sessions() as s:
                self.claims = [c for c in self.claims
                               if s.scalar(select(Job.attempts).where(
                                   Job.id == c.job_id, Job.status == JobStatus.RUNNING))
                               == c.attempt]  # fmt: skip


def test_the_counts_are_the_jobs_counted_after_every_write_of_random_scripts(own_pg_sessions):
    for seed in (1, 2, 3):
        script = _Script(own_pg_sessions, random.Random(seed))
        script.run(80)
        with own_pg_sessions.begin() as s:
            s.execute(text("TRUNCATE jobs CASCADE"))
        with own_pg_sessions() as s:
            assert s.execute(text("SELECT count(*) FROM job_team_counts")).scalar_one() == 0
        script.run(15)  # counted again from nothing
        with own_pg_sessions.begin() as s:
            s.execute(text("TRUNCATE teams CASCADE"))  # truncated through the foreign key


def test_a_heartbeat_runs_no_trigger_function_and_a_finish_runs_one(own_pg_sessions):
    calls = text(
        "SELECT coalesce(pg_stat_get_xact_function_calls("
        "'bilevel_job_counts_row'::regproc::oid), 0)"
    )
    with own_pg_sessions.begin() as s:
        team = repo.ensure_team(s, "beats").id
        repo.create_job(s, team, parse_spec(tiny_spec()))
    with own_pg_sessions.begin() as s:
        claim = repo.claim_next(s, "cpu", "w1", LEASE_S, POLICY)
    assert isinstance(claim, repo.Claim)
    with own_pg_sessions.begin() as s:
        s.execute(text("SET LOCAL track_functions = 'pl'"))
        for it in range(1, 4):
            state = repo.heartbeat_with_trace(
                s, claim, LEASE_S, [{"iteration": it}], iteration=it, eta_s=1.0, summary={"x": it}
            )
            assert state == repo.LeaseState.OK
        repo.cancel_job(s, s.get(Job, claim.job_id))  # asked of a running job: no change
        assert s.scalar(calls) == 0
        assert repo.finish_with_trace(s, claim, JobStatus.CANCELLED, [{"iteration": 4}])
        assert s.scalar(calls) == 1
        assert s.execute(_TABLE).one()[2:] == (0, 0)


def test_the_upgrade_backfills_the_counts_and_the_downgrade_restores_0020s_snapshot(
    fresh_database,
):
    url = fresh_database()
    cfg = alembic_config(url)
    command.upgrade(cfg, "0022")
    source = text("SELECT pg_get_functiondef('bilevel_claim_snapshot'::regproc)")
    engine = create_engine(normalize_url(url))
    try:
        with engine.begin() as c:
            before = c.scalar(source)
            teams = [uuid.uuid4() for _ in range(3)]
            for k, t in enumerate(teams):
                c.execute(text("INSERT INTO teams (id, name, created_at) VALUES (:t, :n, now())"),
                          {"t": t, "n": f"b{k}"})  # fmt: skip
            rng = random.Random(7)
            for _ in range(40):
                c.execute(
                    text(
                        "INSERT INTO jobs (id, team_id, name, spec, queue, status, attempts,"
                        " max_attempts, cancel_requested, iteration, iterations, created_at,"
                        " updated_at) VALUES (:id, :t, 'j', '{}', :q, :st, 0, 3, :c, 0, 5,"
                        " now(), now())"
                    ),
                    {"id": uuid.uuid4(), "t": rng.choice(teams), "q": rng.choice(KINDS),
                     "st": rng.choice(list(JobStatus)), "c": rng.random() < 0.2},
                )  # fmt: skip
        command.upgrade(cfg, "0023")
        with engine.connect() as c:
            truth = _nonzero(c.execute(_TRUTH, _STATES))
            assert truth and _nonzero(c.execute(_TABLE)) == truth
        command.downgrade(cfg, "0022")
        with engine.connect() as c:
            assert c.scalar(source) == before
            triggers = c.execute(text("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"))
            assert triggers.all() == []
            gone = c.execute(text("SELECT proname FROM pg_proc WHERE proname LIKE 'bilevel_job%'"))
            assert gone.all() == []
    finally:
        engine.dispose()
    assert "job_team_counts" not in table_names(url)


def test_concurrent_writers_meet_no_deadlock_and_leave_exact_counts(own_pg_sessions):
    """Claims, finishes, cancels, study cancels and reapers at once, for a few seconds: the
    lock order of the migration's docstring holds (a deadlock would raise here), and the
    counts are the jobs' afterwards."""
    import threading
    import time

    from sqlalchemy.exc import OperationalError

    seed = _Script(own_pg_sessions, random.Random(9))
    for _ in range(6):
        with own_pg_sessions.begin() as s:
            seed.submit(s)
            seed.study(s)
    errors: list[RuntimeError] = []
    stop = time.monotonic() + 4.0

    def worker(k: int) -> None:
        script = _Script.__new__(_Script)
        script.sessions, script.rng, script.claims = own_pg_sessions, random.Random(k), []
        script.teams = seed.teams
        steps = ("claim", "claim", "finish", "release", "cancel", "cancel_study", "expire",
                 "reap", "submit", "study")  # fmt: skip
        while time.monotonic() < stop and not errors:
            try:
                step = script.rng.choice(steps)
                with own_pg_sessions.begin() as s:
                    getattr(script, step)(s)
            except OperationalError as exc:  # a deadlock is one
                errors.append(RuntimeError(f"{step}: {exc.orig}"))
            with own_pg_sessions() as s:  # claims whose lease moved on are gone
                script.claims = [c for c in script.claims
                                 if s.scalar(select(Job.attempts).where(
                                     Job.id == c.job_id, Job.status == JobStatus.RUNNING))
                                 == c.attempt]  # fmt: skip

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    with own_pg_sessions() as s:
        _check_counts(s, "after the concurrent writers")
