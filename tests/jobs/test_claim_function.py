"""The claim's server-side function (migration 0020) against the Python rule it replaces.

:func:`jobs.fairshare.pick_order` is the reference: ``bilevel_claim_turns`` must give the
same turns on every snapshot (ties of load and weight, limits, short queues), or the claim
would drift from the policy the pool view and the simulator use.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text

from jobs.fairshare import Candidate, TeamLoad, pick_order
from jobs.specs.job import parse_spec
from jobs.store import repo
from jobs.store.models import Job
from jobs.store.repo import Policy, claims
from tests.factories import tiny_spec

POLICY = Policy(cpu_limit=4, preemption=False)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# weights that tie loads across teams ((r + k) / w equal for different r, w) and that round
WEIGHTS = (0.1, 0.2, 0.3, 0.6, 0.7, 1.0, 1.0, 1.5, 2.0, 3.0, 3.0, 7.0 / 3.0, 5.0)

_TURNS_SQL = text(
    "SELECT team, before, team_limit FROM bilevel_claim_turns(CAST(:ids AS uuid[]),"
    " CAST(:weights AS float8[]), CAST(:running AS integer[]), CAST(:queued AS integer[]),"
    " CAST(:limits AS integer[]), CAST(:heads AS integer), CAST(:turns AS integer))"
)


def _python_turns(teams: list[tuple[uuid.UUID, float, int, int, int]], first: int) -> list[Any]:
    """``(team, before, limit)`` of the first picks: pick_order on the capped queue heads."""
    loads = {str(t): TeamLoad(w, r, lim) for t, w, r, _, lim in teams}
    heads = claims.HEADS
    lines = [
        c for t, _, _, q, _ in teams for c in [Candidate(None, str(t), 0, _EPOCH)] * min(q, heads)
    ]
    taken: Counter[str] = Counter()
    out = []
    for c in pick_order(loads, lines, first=first):
        load = loads[c.team]
        out.append((uuid.UUID(c.team), load.running + taken[c.team], load.limit))
        taken[c.team] += 1
    return out


def _snapshot(rng: random.Random) -> list[tuple[uuid.UUID, float, int, int, int]]:
    """A random snapshot; ids share prefixes so that ties fall to the id's later bytes."""
    n = rng.randint(1, 40)
    prefix = rng.choice(["", "00000000", "ffffffff-ffff"])
    teams = []
    for _ in range(n):
        u = uuid.uuid4().hex
        u = (prefix.replace("-", "") + u)[:32]
        team = uuid.UUID(u)
        running = rng.choice([0, 0, 1, 2, 3, 5, 9])
        limit = rng.choice([0, 1, 2, 3, 4, 8, 20, 2**31 - 1])
        teams.append((team, rng.choice(WEIGHTS), running, rng.randint(1, 6), limit))
    return teams


# loads a rounding apart: 21 / 0.7 is 30.000000000000004, above 3 / 0.1 (30.0); rounded
# coarser they would tie and the larger weight (0.7) would go first
_EDGES = [
    [(uuid.UUID(int=2), 0.7, 21, 3, 40), (uuid.UUID(int=1), 0.1, 3, 3, 40)],
    [(uuid.UUID(int=1), 0.3, 2, 3, 20), (uuid.UUID(int=2), 0.1, 0, 3, 20)],
    [(uuid.UUID(int=1), 2.0, 0, 3, 0), (uuid.UUID(int=2), 1.0, 4, 3, 4)],  # limits: no turn
]


def test_the_sql_turns_are_pick_orders_first_picks_on_random_snapshots(pg_sessions):
    rng = random.Random(26)
    cases = [(t, claims.TURNS) for t in _EDGES]
    for _ in range(600):
        cases.append((_snapshot(rng), rng.choice([1, 2, 5, claims.TURNS, 200])))
    with pg_sessions() as s:
        for case, (teams, first) in enumerate(cases):
            got = s.execute(
                _TURNS_SQL,
                {
                    "ids": [t for t, *_ in teams],
                    "weights": [w for _, w, *_ in teams],
                    "running": [r for _, _, r, _, _ in teams],
                    "queued": [q for *_, q, _ in teams],
                    "limits": [lim for *_, lim in teams],
                    "heads": claims.HEADS,
                    "turns": first,
                },
            ).all()
            assert [tuple(r) for r in got] == _python_turns(teams, first), (case, teams)


def test_the_team_lock_key_is_the_ids_lower_32_bits_less_2_to_the_31(pg_sessions):
    """The key the Python claim took before 0020: old and new claims exclude each other."""
    ids = [uuid.UUID(int=0), uuid.UUID(int=2**128 - 1), uuid.UUID(int=2**31), uuid.uuid4()]
    with pg_sessions() as s:
        for team in ids:
            got = s.scalar(text("SELECT bilevel_claim_team_key(:t)"), {"t": team})
            assert got == (team.int & 0xFFFFFFFF) - 2**31, team


# name: (weight, own limit or None, jobs, running)
TEAMS = {"a": (3.0, None, 5, 1), "b": (1.0, 2, 4, 2), "c": (2.0, 3, 2, 0), "d": (0.5, None, 1, 0),
         "e": (1.0, None, 7, 3), "f": (1.5, 6, 9, 1), "g": (1.0, None, 0, 2)}  # fmt: skip


def _store(sessions: Any) -> dict[str, uuid.UUID]:
    """:data:`TEAMS` with their jobs queued, then ``running`` of each claimed by name."""
    with sessions.begin() as s:
        ids, jobs = {}, {}
        for name, (weight, limit, n, running) in TEAMS.items():
            ids[name] = repo.ensure_team(s, name).id
            op = repo.Actor.operator(ids[name])
            repo.set_team_policy(s, name, actor=op, weight=weight, max_running_cpu=limit)
            spec = parse_spec(tiny_spec())
            jobs[name] = [repo.create_job(s, ids[name], spec)[0].id for _ in range(n + running)]
        for name, (*_, running) in TEAMS.items():
            for k in range(running):
                assert repo.claim_job(s, jobs[name][k], f"w-{name}-{k}", 30.0) is not None
    return ids


_STORE_TURNS = text(
    "SELECT u.team, u.before, u.team_limit"
    " FROM bilevel_claim_snapshot('cpu', :weight, :limit, false, :heads) AS n,"
    " bilevel_claim_turns(n.ids, n.weights, n.running, n.queued, n.limits, :heads, :turns) AS u"
)


def _sql_turns(s: Any) -> list[claims.Turn]:
    params = {"weight": POLICY.default_weight, "limit": POLICY.cpu_limit,
              "heads": claims.HEADS, "turns": claims.TURNS}  # fmt: skip
    return [claims.Turn(*r) for r in s.execute(_STORE_TURNS, params)]


def test_the_sql_snapshot_gives_the_turns_the_python_reader_gives(own_pg_sessions):
    """Limits (own and default), running counts, short queues, a team with none queued."""
    _store(own_pg_sessions)
    with own_pg_sessions() as s:
        expected = claims._turns(s, "cpu", POLICY)
        assert expected and _sql_turns(s) == expected
        for k in range(6):  # and as claims move the loads
            assert isinstance(repo.claim_next(s, "cpu", f"x{k}", 30.0, POLICY), repo.Claim)
            s.commit()
            assert _sql_turns(s) == claims._turns(s, "cpu", POLICY)


_ROUND = text(
    "SELECT taken, taken_attempt, outcome FROM bilevel_claim_round('cpu', 'w2',"
    " now()::timestamp, now()::timestamp + interval '30 seconds', :space,"
    " CAST(:teams AS uuid[]), CAST(:befores AS integer[]), CAST(:limits AS integer[]), false)"
)


def test_a_stale_turn_passes_to_the_next_one_inside_the_function(own_pg_sessions):
    """A round given turns read before another claim took turn 0 takes turn 1's team."""
    _store(own_pg_sessions)
    with own_pg_sessions() as s:
        stale = _sql_turns(s)
    assert stale[0].team != stale[1].team
    with own_pg_sessions.begin() as s:
        first = repo.claim_next(s, "cpu", "w1", 30.0, POLICY)
    assert isinstance(first, repo.Claim)
    with own_pg_sessions.begin() as s:
        params = {
            "space": claims._team_space("cpu"),
            "teams": [t.team for t in stale],
            "befores": [t.before for t in stale],
            "limits": [t.limit for t in stale],
        }
        taken, attempt, outcome = s.execute(_ROUND, params).one()
        assert outcome == "taken" and attempt == 1
        teams = [s.get(Job, j).team_id for j in (first.job_id, taken)]
    assert teams == [stale[0].team, stale[1].team]


def test_the_hinted_job_asked_to_cancel_while_queued_ends_cancelled_in_the_claim(
    own_pg_sessions,
):
    """The broker's message named a job cancelled meanwhile: the claim ends it, takes another."""
    with own_pg_sessions.begin() as s:
        team = repo.ensure_team(s, "alpha").id
        hinted, other = (repo.create_job(s, team, parse_spec(tiny_spec()))[0] for _ in "ab")
        hinted.cancel_requested = True
    with own_pg_sessions.begin() as s:
        got = repo.claim_next(s, "cpu", "w1", 30.0, POLICY, hint=hinted.id)
    assert isinstance(got, repo.Claim) and got.job_id == other.id
    with own_pg_sessions() as s:
        assert s.get(Job, hinted.id).status == "cancelled"
        events = s.execute(
            text("SELECT from_status, to_status, attempt FROM job_events WHERE job_id = :j"),
            {"j": hinted.id},
        ).all()
    assert [tuple(e) for e in events] == [(None, "queued", 0), ("queued", "cancelled", 0)]
