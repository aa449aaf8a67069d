"""Grid expansion: products over dotted paths, options that do not apply, every error named."""

from __future__ import annotations

import pytest

from jobs.studies.grid import GridError, expand, grid_paths, replicate_paths
from tests.factories import tiny_spec


def _expand(grid, base=None, limit=64):
    return expand(base or tiny_spec(steps=10), grid, max_members=limit, name="s")


def test_members_are_the_product_in_the_order_of_the_lists():
    exp = _expand({"inner.lr": [0.1, 0.2], "seed": [3, 4, 5]})
    assert [m.values for m in exp.members] == [
        {"inner.lr": lr, "seed": s} for lr in (0.1, 0.2) for s in (3, 4, 5)
    ]
    assert [(m.spec.inner.lr, m.spec.seed) for m in exp.members] == [
        (lr, s) for lr in (0.1, 0.2) for s in (3, 4, 5)
    ]
    assert exp.members[0].spec.name == "s [inner.lr=0.1, seed=3]"


def test_sweeping_the_method_drops_base_options_the_other_method_does_not_take():
    exp = _expand({"hypergradient.method": ["truncated", "full"]})  # base has K=3
    assert [m.spec.hypergradient.method for m in exp.members] == ["truncated", "full"]
    assert exp.members[0].spec.hypergradient.model_dump()["K"] == 3
    assert exp.skipped == []


def test_sweeping_the_problem_kind_keeps_only_the_options_each_kind_takes():
    base = tiny_spec(steps=10)
    base["problem"] = {"kind": "quadratic", "dim": 4}
    exp = _expand({"problem.kind": ["quadratic", "toy"]}, base=base)
    assert [m.spec.problem.kind for m in exp.members] == ["quadratic", "toy"]


def test_every_grid_path_is_a_field_of_the_spec():
    paths = grid_paths()
    assert {"hypergradient.K", "hypergradient.method", "seed", "problem.seed", "outer.lr"} <= paths
    assert "hypergradient.k" not in paths


def test_seeds_are_the_replicates():
    assert replicate_paths(["hypergradient.K", "seed", "problem.seed"]) == ["seed", "problem.seed"]


def test_a_base_error_is_named_under_base():
    base = tiny_spec(steps=10)
    base["outer"]["iterations"] = 0
    with pytest.raises(GridError) as exc:
        _expand({"seed": [0]}, base=base)
    assert exc.value.errors[0]["field"] == "base.outer.iterations"


def test_duplicates_in_a_list_are_refused():
    with pytest.raises(GridError, match="lists a value twice"):
        _expand({"seed": [1, 1]})


def test_the_limit_is_checked_before_expanding():
    with pytest.raises(GridError) as exc:
        _expand({"seed": list(range(1000)), "inner.steps": list(range(1, 1001))}, limit=10)
    assert exc.value.limit == 10
    assert "1000000 combinations" in str(exc.value)


def test_a_study_sweeps_estimators_against_single_loop_methods_and_warm_starts():
    exp = _expand(
        {
            "hypergradient.method": ["truncated", "soba", "f2sa"],
            "hypergradient.penalty_max": [100.0],
            "inner.warm_start": [False, True],
        }
    )
    got = [(m.spec.hypergradient.method, m.spec.inner.warm_start) for m in exp.members]
    assert got == [(k, w) for k in ("truncated", "soba", "f2sa") for w in (False, True)]
    assert [m.spec.hypergradient.penalty_max for m in exp.members[4:]] == [100.0, 100.0]
    assert all("penalty_max" not in m.spec.hypergradient.model_dump() for m in exp.members[:4])
