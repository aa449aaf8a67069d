"""Parameter importance: the path an objective depends on gets the largest share."""

from __future__ import annotations

import math
import random

import pytest

from jobs.studies.search.importance import MIN_TRIALS, importance
from jobs.studies.search.space import SearchSpec
from jobs.studies.search.trials import Trial

SPACE = {
    "outer.lr": {"type": "float", "low": 1e-3, "high": 0.5, "log": True},
    "hypergradient.K": {"type": "categorical", "choices": [1, 2, 5]},
    "inner.steps": {"type": "int", "low": 5, "high": 15, "step": 5},
}
# each objective depends on one path only
ONLY = {
    "outer.lr": lambda p: math.log(p["outer.lr"] / 0.02) ** 2,
    "hypergradient.K": lambda p: float(p["hypergradient.K"] != 5),
    "inner.steps": lambda p: abs(p["inner.steps"] - 10) / 5,
}


def _trials(n: int, objective, seed: int = 0, sign: float = 1.0) -> list[Trial]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        p = {
            "outer.lr": math.exp(rng.uniform(math.log(1e-3), math.log(0.5))),
            "hypergradient.K": rng.choice([1, 2, 5]),
            "inner.steps": rng.choice([5, 10, 15]),
        }
        out.append(Trial(i, p, "complete", [sign * objective(p)]))  # fmt: skip
    return out


@pytest.mark.parametrize("path", sorted(ONLY))
@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_the_one_path_the_objective_depends_on_is_the_most_important(path, direction):
    search = SearchSpec.model_validate(
        {"params": SPACE, "n_trials": 40, "objectives": [{"metric": "final_outer_loss",
                                                          "direction": direction}]})  # fmt: skip
    sign = 1.0 if direction == "minimize" else -1.0
    # a failed and a running trial carry no value: they are left out
    trials = [*_trials(40, ONLY[path], sign=sign), Trial(40, dict(_trials(1, ONLY[path])[0].params),
                                                         "fail"),
              Trial(41, dict(_trials(1, ONLY[path])[0].params))]  # fmt: skip
    got = importance(search, trials)
    assert got is not None and got["trials"] == 40 and got["evaluator"] == "ped_anova"
    shares = got["params"]
    assert set(shares) == set(SPACE)
    assert max(shares, key=lambda k: shares[k]) == path
    assert list(shares) == sorted(shares, key=lambda k: -shares[k])  # largest first
    assert math.isclose(sum(shares.values()), 1.0, abs_tol=1e-5)
    assert importance(search, trials) == got  # deterministic


def test_too_few_complete_trials_give_no_importance():
    search = SearchSpec.model_validate({"params": SPACE, "n_trials": 40})
    assert importance(search, _trials(MIN_TRIALS - 1, ONLY["outer.lr"])) is None
    assert importance(search, _trials(MIN_TRIALS, ONLY["outer.lr"])) is not None
