"""The hybrid-search benchmarks keep the iterate whose loss they saw, and run small."""

from __future__ import annotations

import contextlib
import json
import math

import pytest

import core
from benchmarks.library import search_hybrid, search_hybrid_cleaning


@pytest.mark.parametrize("outer_lr", [0.3, 1.0])
def test_the_kept_iterate_evaluates_to_the_loss_it_was_kept_for(outer_lr):
    # a record's outer loss is f before the update: keeping the iterate after it (the bug
    # this guards) evaluates to another loss, at outer lr 1.0 to a diverged one
    problem = search_hybrid.make_problem(0, 5, 25, 60)
    start = problem.initial_hparams()
    best = search_hybrid._Best(start["feature_penalties"])
    with contextlib.suppress(core.DivergenceError):
        core.fit(problem, start, core.GradientDescent(steps=50, lr=0.1),
                 core.make_estimator("truncated", K=10), iterations=12, lr=outer_lr,
                 keep_history=False, callback=best)  # fmt: skip
    assert best.hparams is not None and math.isfinite(best.loss)
    val, _ = search_hybrid.evaluate(problem, best.hparams, 50, 0.1)
    assert math.isclose(val, best.loss, rel_tol=1e-5)


def test_the_cleaning_benchmark_runs_small_and_writes_rows_and_curves(tmp_path, capsys):
    out = tmp_path / "cleaning.json"
    got = search_hybrid_cleaning.main(["--seeds", "0", "--train", "40", "--val", "40",
                                       "--steps", "10", "--iterations", "3",
                                       "--hybrid-budget", "8", "--blackbox-budget", "10",
                                       "--json", str(out)])  # fmt: skip
    saved = json.loads(out.read_text())
    assert saved["rows"] == got["rows"]
    methods = {r["method"] for r in got["rows"]}
    assert methods == {"hybrid", "hybrid_first", "blackbox", "shared"}
    for curve in saved["curves"]["blackbox"]:
        assert curve[-1][0] == 10  # the last point is kept: all the compute spent
        vals = [p[2] for p in curve]
        assert vals == sorted(vals, reverse=True)  # the best so far only improves
    assert "hybrid_first" in capsys.readouterr().out
