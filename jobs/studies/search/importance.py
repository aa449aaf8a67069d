"""Parameter importance of a search: how much each path explains its first objective.

Optuna's PED-ANOVA evaluator (``PedAnovaImportanceEvaluator``) on an in-memory study of
the stored complete trials: it compares where the best quarter of the trials lie with where
all of them lie, per parameter. It is deterministic (no random forest, so no seed to keep)
and needs only NumPy, which the API installs with Optuna; fANOVA would need scikit-learn.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import optuna

from jobs.status import TrialStatus
from jobs.studies.search.sampling import rebuild
from jobs.studies.search.space import SearchSpec
from jobs.studies.search.trials import Trial

__all__ = ["EVALUATOR", "MIN_TRIALS", "importance"]

#: the evaluator's name, as the API reports it
EVALUATOR = "ped_anova"
#: complete trials below which no importance is reported (PED-ANOVA's top quantile is empty)
MIN_TRIALS = 4
# the best quarter is the "good" set: a tenth (Optuna's default) is one trial in a study of 10
_TOP = 0.25


def importance(search: SearchSpec, trials: Sequence[Trial]) -> dict[str, Any] | None:
    """Each searched path's importance for the first objective, largest first.

    Returns:
        ``{"evaluator", "objective", "trials", "params": {path: fraction}}`` (fractions sum
        to 1, or are all 0 when no path tells the best trials apart), or ``None`` with fewer
        than :data:`MIN_TRIALS` complete trials.
    """
    done = [t for t in trials if t.state == TrialStatus.COMPLETE and t.values]
    if len(done) < MIN_TRIALS:
        return None
    sign = 1.0 if search.objectives[0].direction == "minimize" else -1.0
    study = rebuild(search, done, 0)
    evaluator = optuna.importance.PedAnovaImportanceEvaluator(target_quantile=_TOP)
    with warnings.catch_warnings():  # "assumes lower target is better": the sign sees to it
        warnings.simplefilter("ignore")
        got = optuna.importance.get_param_importances(
            study,
            evaluator=evaluator,
            params=sorted(search.params),
            target=lambda t: sign * t.values[0],
            normalize=True,
        )
    ranked = sorted(got.items(), key=lambda kv: (-kv[1], kv[0]))
    return {"evaluator": EVALUATOR, "objective": search.objectives[0].metric,
            "trials": len(done), "params": {k: round(float(v), 6) for k, v in ranked}}  # fmt: skip
