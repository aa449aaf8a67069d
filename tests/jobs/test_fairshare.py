"""The fair-share selection (jobs.fairshare): invariants on plain values, no store."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from jobs.fairshare import (
    Candidate,
    Priority,
    Running,
    TeamLoad,
    estimated_starts,
    jobs_ahead,
    pick_next,
    pick_order,
    preemption_victims,
    should_preempt,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def job(i: int, team: str, priority: Priority = Priority.NORMAL) -> Candidate[int]:
    return Candidate(id=i, team=team, priority=priority, created_at=T0 + timedelta(seconds=i))


def test_the_team_furthest_below_its_share_goes_first_even_when_it_queued_last():
    teams = {"alpha": TeamLoad(1.0, 2, 20), "beta": TeamLoad(1.0, 0, 20)}
    queued = [job(i, "alpha") for i in range(10)] + [job(10, "beta")]
    assert pick_next(teams, queued).id == 10


def test_a_high_priority_job_goes_before_its_teams_older_normal_ones():
    queued = [job(0, "a"), job(1, "a", Priority.LOW), job(2, "a", Priority.HIGH), job(3, "a")]
    order = [c.id for c in pick_order({}, queued)]
    assert order == [2, 0, 3, 1]


def test_priority_does_not_jump_another_teams_share():
    teams = {"a": TeamLoad(1.0, 1, 20), "b": TeamLoad(1.0, 0, 20)}
    assert pick_next(teams, [job(0, "a", Priority.HIGH), job(1, "b", Priority.LOW)]).id == 1


def test_a_team_at_its_limit_is_passed_over_and_none_when_all_are():
    teams = {"a": TeamLoad(1.0, 1, 1), "b": TeamLoad(1.0, 3, 20)}
    assert pick_next(teams, [job(0, "a"), job(1, "b")]).id == 1
    assert pick_next(teams, [job(0, "a")]) is None


@pytest.mark.parametrize("weights,workers", [((3.0, 1.0), 4), ((3.0, 1.0), 8), ((2.0, 1.0), 9)])
def test_backlogged_teams_fill_the_workers_in_proportion_to_their_weights(weights, workers):
    queued = [job(i, t) for i, t in enumerate(["a", "b"] * 50)]
    teams = {"a": TeamLoad(weights[0], 0, 100), "b": TeamLoad(weights[1], 0, 100)}
    taken = pick_order(teams, queued)[:workers]
    share_a = sum(c.team == "a" for c in taken)
    # within one job of the weighted share
    assert abs(share_a - workers * weights[0] / sum(weights)) <= 1


def test_weights_must_be_positive():
    with pytest.raises(ValueError, match="weight must be > 0, got 0"):
        TeamLoad(0.0, 0, 1)


def _states(n_teams: int = 3, max_running: int = 6):
    weights = (1.0, 2.0, 3.0)[:n_teams]
    for running in itertools.product(range(max_running + 1), repeat=n_teams):
        yield {f"t{i}": TeamLoad(weights[i], running[i], 100) for i in range(n_teams)}


def test_no_two_teams_can_preempt_each_other_back_and_forth():
    """After a worker moves from v to s, s's job is never a victim for v."""
    checked = 0
    for teams in _states():
        for s, v in itertools.permutations(teams, 2):
            if not should_preempt(teams[s], teams[v]):
                continue
            after_s = TeamLoad(teams[s].weight, teams[s].running + 1, 100)
            after_v = TeamLoad(teams[v].weight, teams[v].running - 1, 100)
            assert not should_preempt(after_v, after_s), (s, v, teams)
            checked += 1
    assert checked > 100


def test_every_preemption_lowers_the_weighted_imbalance_so_none_cycles():
    """sum_t r_t^2 / w_t strictly falls with each move: no sequence returns."""

    def potential(teams):
        return sum(t.running**2 / t.weight for t in teams.values())

    for teams in _states():
        for s, v in itertools.permutations(teams, 2):
            if should_preempt(teams[s], teams[v]):
                moved = dict(teams)
                moved[s] = TeamLoad(teams[s].weight, teams[s].running + 1, 100)
                moved[v] = TeamLoad(teams[v].weight, teams[v].running - 1, 100)
                assert potential(moved) < potential(teams)


def test_the_newest_old_enough_job_of_the_most_over_share_team_yields():
    teams = {"alpha": TeamLoad(1.0, 2, 20), "beta": TeamLoad(1.0, 0, 20)}
    running = [
        Running(100, "alpha", T0),
        Running(101, "alpha", T0 + timedelta(seconds=30)),
        Running(102, "alpha", T0 + timedelta(seconds=90)),  # too young
    ]
    victims = preemption_victims(teams, {"beta": 1}, running, idle_workers=0,
                                 started_before=T0 + timedelta(seconds=60))  # fmt: skip
    assert victims == [101]


def test_no_preemption_while_a_worker_is_idle_or_when_the_move_would_not_help():
    teams = {"alpha": TeamLoad(1.0, 2, 20), "beta": TeamLoad(1.0, 0, 20)}
    running = [Running(100, "alpha", T0), Running(101, "alpha", T0)]
    late = T0 + timedelta(hours=1)
    assert preemption_victims(teams, {"beta": 1}, running, idle_workers=1,
                              started_before=late) == []  # fmt: skip
    even = {"alpha": TeamLoad(1.0, 1, 20), "beta": TeamLoad(1.0, 1, 20)}
    assert preemption_victims(even, {"beta": 1}, running[:1], idle_workers=0,
                              started_before=late) == []  # fmt: skip


def test_preemption_stops_at_the_weighted_share():
    """Weights 3:1 on 4 workers all held by alpha: exactly one alpha job yields to beta."""
    teams = {"alpha": TeamLoad(3.0, 4, 20), "beta": TeamLoad(1.0, 0, 20)}
    running = [Running(100 + i, "alpha", T0) for i in range(4)]
    victims = preemption_victims(teams, {"beta": 5}, running, idle_workers=0,
                                 started_before=T0 + timedelta(hours=1))  # fmt: skip
    assert len(victims) == 1


def test_random_states_never_preempt_into_a_worse_split():
    rng = random.Random(0)
    for _ in range(500):
        teams = {f"t{i}": TeamLoad(rng.choice([1.0, 2.0, 5.0]), rng.randint(0, 5), 100)
                 for i in range(4)}  # fmt: skip
        running = [Running(f"{n}-{k}", n, T0) for n, t in teams.items() for k in range(t.running)]
        queued = Counter(rng.choice(list(teams)) for _ in range(rng.randint(0, 6)))
        victims = preemption_victims(teams, queued, running, idle_workers=0,
                                     started_before=T0 + timedelta(1))  # fmt: skip
        assert len(victims) <= queued.total()
        assert len(set(victims)) == len(victims)


def test_estimated_starts_follow_list_scheduling_on_the_workers():
    # two workers, free in 10 s and 0 s; three jobs of 5 s each
    starts = estimated_starts(["a", "b", "c"], [10.0, 0.0], {"a": 5.0, "b": 5.0, "c": 5.0})
    assert starts == {"a": 0.0, "b": 5.0, "c": 10.0}
    assert estimated_starts(["a"], [], {"a": 1.0}) == {}


@pytest.mark.parametrize("seed", range(40))
def test_jobs_ahead_counts_every_teams_jobs_before_each_of_one_teams_as_pick_order_does(seed):
    rng = random.Random(seed)
    # small integer weights and counts make equal loads, and so ties, common; limits and
    # teams already over them send some teams to the second round
    teams = {
        f"t{i}": TeamLoad(rng.choice([0.5, 1.0, 2.0, 3.0]), rng.randint(0, 4), rng.randint(1, 6))
        for i in range(rng.randint(1, 6))
    }
    queued = [job(i, rng.choice(list(teams)), rng.choice(list(Priority))) for i in range(60)]
    queued += [job(100, "unknown")]  # a team missing from the loads counts as _FREE
    order = pick_order(teams, queued)
    counts = {t: sum(c.team == t for c in queued) for t in {*teams, "unknown"}}
    for team, n in counts.items():
        places = [p for p, c in enumerate(order) if c.team == team]
        ahead = jobs_ahead(teams, counts, team, n)
        assert [1 + sum(a.values()) for a in ahead] == [p + 1 for p in places]
        for a, p in zip(ahead, places, strict=True):  # who is ahead, not only how many
            assert a == {t: k for t, k in Counter(c.team for c in order[:p]).items() if k}


def test_a_team_with_more_jobs_than_counted_places_the_extra_ones_after_its_counted_ones():
    # the view reads its own jobs fresh and the others' counts from a reading seconds old
    teams = {"a": TeamLoad(1.0, 0, 20), "b": TeamLoad(1.0, 0, 20)}
    got = jobs_ahead(teams, {"a": 1, "b": 2}, "a", 3)
    assert got == jobs_ahead(teams, {"a": 3, "b": 2}, "a", 3)
    assert [1 + sum(x.values()) for x in got] == [1, 3, 5]  # a, b, a, b, a
