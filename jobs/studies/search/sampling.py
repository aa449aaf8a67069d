"""Ask a search's sampler for the next trial, its state rebuilt from the stored trials.

Nothing of the sampler lives between two asks: each ask builds an in-memory Optuna study,
adds every stored trial (``optuna.trial.create_trial`` with its parameters, state, values,
intermediate values and the system attributes its sampler wrote when it was asked, such as
CMA-ES's optimizer), and asks once, with the sampler seeded from the study's seed and the
new trial's number. The store is the record: an API or worker that restarts between two
asks asks the same thing, and two asks of the same history give the same suggestion.
Running trials are added as running, so TPE's constant liar and the grid sampler see them.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState

from jobs.status import TrialStatus
from jobs.studies.search.space import CategoricalParam, FloatParam, IntParam, SearchSpec
from jobs.studies.search.trials import Trial

__all__ = ["Suggestion", "distributions", "make_sampler", "rebuild", "suggest"]

optuna.logging.set_verbosity(optuna.logging.WARNING)

_STATES: dict[str, TrialState] = {
    TrialStatus.RUNNING: TrialState.RUNNING,
    TrialStatus.COMPLETE: TrialState.COMPLETE,
    TrialStatus.PRUNED: TrialState.PRUNED,
    TrialStatus.FAIL: TrialState.FAIL,
}
# a prime stride keeps (seed, number) pairs from colliding for any seed below 2**31
_STRIDE = 1_000_003


def distributions(search: SearchSpec) -> dict[str, BaseDistribution]:
    """The Optuna distribution of each searched path, in the paths' sorted order.

    Sorted: PostgreSQL's ``jsonb`` does not keep an object's key order, and the order in
    which a sampler draws the parameters changes what it draws.
    """
    out: dict[str, BaseDistribution] = {}
    for path, p in sorted(search.params.items()):
        if isinstance(p, FloatParam):
            out[path] = FloatDistribution(p.low, p.high, log=p.log)
        elif isinstance(p, IntParam):
            out[path] = IntDistribution(p.low, p.high, log=p.log, step=p.step)
        elif isinstance(p, CategoricalParam):
            out[path] = CategoricalDistribution(p.choices)
    return out


def _grid_values(p: FloatParam | IntParam | CategoricalParam) -> list[Any]:
    if isinstance(p, CategoricalParam):
        return list(p.choices)
    if isinstance(p, IntParam):
        return list(range(p.low, p.high + 1, p.step))
    raise ValueError("the grid sampler takes int or categorical params")  # checks.py refuses it


def make_sampler(search: SearchSpec, number: int) -> optuna.samplers.BaseSampler:
    """The search's sampler, seeded for trial ``number``.

    QMC keeps one seed for the whole study: its points are one scrambled Sobol sequence,
    indexed by trial number.
    """
    seed = (search.seed * _STRIDE + number) % 2**32
    kind = search.sampler
    if kind == "tpe":
        return optuna.samplers.TPESampler(
            seed=seed, constant_liar=True, multivariate=True, n_startup_trials=5
        )
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "cmaes":
        return optuna.samplers.CmaEsSampler(
            seed=seed, n_startup_trials=2, warn_independent_sampling=False
        )
    if kind == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=5)
    if kind == "qmc":
        with warnings.catch_warnings():  # "experimental": its interface may change
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.QMCSampler(seed=search.seed, scramble=True,
                                              warn_independent_sampling=False)  # fmt: skip
    if kind == "grid":
        space = {k: _grid_values(p) for k, p in sorted(search.params.items())}
        return optuna.samplers.GridSampler(space, seed=seed)
    raise ValueError(f"unknown sampler {kind!r}")  # the schema's Literal refuses it first


def rebuild(
    search: SearchSpec, trials: Sequence[Trial], number: int, warm: Sequence[Trial] = ()
) -> optuna.Study:
    """An in-memory study holding ``trials``, its sampler seeded for trial ``number``.

    ``warm``: earlier studies' finished members (:mod:`jobs.studies.search.warm`), added
    first as complete trials, so the sampler sees them as it sees the study's own.
    """
    dists = distributions(search)
    study = optuna.create_study(
        # Hyperband assigns brackets by a hash of the study's name and the trial's number
        study_name=f"search-{search.seed}",
        directions=search.directions,
        sampler=make_sampler(search, number),
        pruner=optuna.pruners.NopPruner(),
    )
    for t in warm:
        params = {k: _typed(d, t.params[k]) for k, d in dists.items()}
        study.add_trial(optuna.trial.create_trial(state=TrialState.COMPLETE, values=t.values,
                                                  params=params, distributions=dists))  # fmt: skip
    for t in sorted(trials, key=lambda t: t.number):
        params = {k: v for k, v in sorted(t.params.items()) if k in dists and v is not None}
        state = _STATES[t.state]
        values = t.values if state == TrialState.COMPLETE else None
        inter = {s: v[0] for s, v in t.intermediate.items() if v and math.isfinite(v[0])}
        study.add_trial(
            optuna.trial.create_trial(
                state=state,
                values=values,
                params=params,
                distributions={k: dists[k] for k in params},
                intermediate_values=inter if len(search.objectives) == 1 else None,
                system_attrs=dict(t.sampler_attrs.get("trial", {})),
            )
        )
    # what the sampler keeps on the study (QMC's index in its sequence), as of the last ask;
    # Optuna has no public setter for a study's system attributes
    last = max((t for t in trials if "study" in t.sampler_attrs), key=lambda t: t.number,
               default=None)  # fmt: skip
    for key, value in (last.sampler_attrs["study"] if last else {}).items():
        study._storage.set_study_system_attr(study._study_id, key, value)
    return study


def _typed(d: BaseDistribution, value: Any) -> Any:
    """A stored JSON number as its distribution's type (a spec may write ``10.0`` for 10)."""
    if isinstance(d, IntDistribution):
        return int(value)
    if isinstance(d, FloatDistribution):
        return float(value)
    return value


class Suggestion:
    """A new trial's parameters and the attributes its sampler wrote on it."""

    def __init__(self, params: dict[str, Any], sampler_attrs: dict[str, Any]):
        self.params = params
        self.sampler_attrs = sampler_attrs


def suggest(
    search: SearchSpec, trials: Sequence[Trial], number: int, warm: Sequence[Trial] = ()
) -> Suggestion:
    """The parameters of trial ``number`` given the stored ``trials`` (and ``warm`` ones first).

    Deterministic: the same history gives the same suggestion.
    """
    study = rebuild(search, trials, number, warm)
    trial = study.ask(distributions(search))
    attrs = study.get_trials(deepcopy=False)[trial.number].system_attrs  # the sampler's notes
    on_study = study._storage.get_study_system_attrs(study._study_id)
    params = {k: trial.params[k] for k in sorted(search.params)}
    return Suggestion(params, {"trial": _jsonable(attrs), "study": _jsonable(on_study)})


def _jsonable(attrs: dict[str, Any]) -> dict[str, Any]:
    ok = (str, int, float, bool, list, dict, type(None))
    return {k: v for k, v in attrs.items() if isinstance(v, ok)}
