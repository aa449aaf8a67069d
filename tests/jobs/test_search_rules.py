"""The search's pure rules: the Pareto front, the best trial, the pruners on stored traces."""

from __future__ import annotations

import random

import pytest

from jobs.studies.search.pruning import should_prune
from jobs.studies.search.space import SearchSpec
from jobs.studies.search.trials import Trial, best_trials, dominates, pareto_front

SPACE = {"outer.lr": {"type": "float", "low": 1e-3, "high": 1.0, "log": True}}


@pytest.mark.parametrize("directions", [["minimize", "minimize"],
                                        ["minimize", "maximize", "minimize"]])  # fmt: skip
def test_the_front_is_mutually_non_dominated_and_dominates_every_other_trial(directions):
    rng = random.Random(0)
    signs = [1.0 if d == "minimize" else -1.0 for d in directions]
    trials = [Trial(i, {}, "complete", [rng.random() for _ in directions]) for i in range(60)]
    trials.append(Trial(60, {}, "pruned"))
    trials.append(Trial(61, {}, "running"))
    front = pareto_front(trials, directions)
    assert 1 < len(front) < 60
    for a in front:
        assert not any(dominates(b.values, a.values, signs) for b in front)
    members = {t.number for t in front}
    for t in trials[:60]:
        if t.number not in members:
            assert any(dominates(f.values, t.values, signs) for f in front)


def test_the_best_trial_follows_the_direction():
    trials = [Trial(i, {}, "complete", [v]) for i, v in enumerate([0.3, 0.1, 0.7])]
    assert [t.number for t in best_trials(trials, ["minimize"])] == [1]
    assert [t.number for t in best_trials(trials, ["maximize"])] == [2]
    assert best_trials([Trial(0, {}, "running")], ["minimize"]) == []


def _finished(n: int, loss) -> list[Trial]:
    return [
        Trial(i, {"outer.lr": 0.1}, "complete", [loss(i, 30)],
              intermediate={s: [loss(i, s)] for s in range(1, 31)})
        for i in range(n)
    ]  # fmt: skip


@pytest.mark.parametrize("kind", ["median", "successive_halving", "hyperband"])
def test_each_pruner_stops_a_member_far_behind_and_keeps_one_ahead(kind):
    search = SearchSpec.model_validate({"params": SPACE, "n_trials": 10, "pruner": {"kind": kind}})
    done = _finished(4, lambda i, s: 1.0 / s + 0.01 * i)
    behind = Trial(9, {"outer.lr": 0.5}, intermediate={s: [10.0] for s in range(1, 10)})
    ahead = Trial(9, {"outer.lr": 0.5}, intermediate={s: [-1.0] for s in range(1, 10)})
    assert should_prune(search, [*done, behind], behind)
    assert not should_prune(search, [*done, ahead], ahead)


def test_a_median_pruner_waits_for_its_warmup_and_startup_trials():
    search = SearchSpec.model_validate({"params": SPACE, "n_trials": 10,
                                        "pruner": {"kind": "median", "warmup_steps": 20,
                                                   "startup_trials": 2}})  # fmt: skip
    behind = Trial(9, {"outer.lr": 0.5}, intermediate={s: [10.0] for s in range(1, 10)})
    assert not should_prune(search, [*_finished(4, lambda i, s: 1.0), behind], behind)
    late = Trial(9, {"outer.lr": 0.5}, intermediate={s: [10.0] for s in range(1, 25)})
    assert should_prune(search, [*_finished(4, lambda i, s: 1.0), late], late)
    assert not should_prune(search, [*_finished(1, lambda i, s: 1.0), late], late)


def test_a_multi_objective_member_is_pruned_when_half_its_peers_dominate_it_at_its_step():
    search = SearchSpec.model_validate({
        "params": SPACE, "n_trials": 10, "pruner": {"kind": "median", "startup_trials": 2},
        "objectives": [{"metric": "final_outer_loss"}, {"metric": "s_per_iteration"}],
    })  # fmt: skip
    # peers at step 5: (loss, seconds) = (1, 1), (2, 0.5), (0.5, 2)
    peers = [Trial(i, {"outer.lr": 0.1}, "complete", [v[0], v[1]], intermediate={5: list(v)})
             for i, v in enumerate([(1.0, 1.0), (2.0, 0.5), (0.5, 2.0)])]  # fmt: skip
    worse = Trial(9, {"outer.lr": 0.5}, intermediate={5: [2.5, 2.5]})  # dominated by all 3
    trade = Trial(9, {"outer.lr": 0.5}, intermediate={5: [3.0, 0.1]})  # dominated by none
    edge = Trial(9, {"outer.lr": 0.5}, intermediate={5: [1.5, 1.5]})  # by 1 of 3: kept
    assert should_prune(search, [*peers, worse], worse)
    assert not should_prune(search, [*peers, trade], trade)
    assert not should_prune(search, [*peers, edge], edge)
