"""Whether a running member should stop now: its study's pruner, on the stored trace.

One objective: Optuna's median, successive-halving or Hyperband pruner is asked about the
running trial, in an in-memory study rebuilt from the stored trials (the outer loss at each
hyper-iteration as their intermediate values), at the last step the member wrote. Several
objectives, where Optuna prunes nothing: the member's values at that step (the outer loss,
and the iteration's seconds or peak memory for those objectives) are compared with the
finished members' at the same step; it is pruned when at least half of them dominate it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import optuna
from optuna.trial import TrialState

from jobs.status import TrialStatus
from jobs.studies.search.sampling import distributions, rebuild
from jobs.studies.search.space import Pruner, SearchSpec
from jobs.studies.search.trials import STEP_FIELDS, Trial, dominates

__all__ = ["make_pruner", "should_prune", "step_fields"]


def step_fields(search: SearchSpec) -> list[str]:
    """The trace fields of a member's intermediate values, the outer loss first.

    Then one per further objective that has a step field (``STEP_FIELDS``).
    """
    out = ["outer_loss"]
    for o in search.objectives[1:]:
        f = STEP_FIELDS.get(o.metric)
        if f is not None and f not in out:
            out.append(f)
    return out


def make_pruner(p: Pruner) -> optuna.pruners.BasePruner:
    """Optuna's pruner for ``p``."""
    if p.kind == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=p.startup_trials, n_warmup_steps=p.warmup_steps
        )
    if p.kind == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=p.min_resource, reduction_factor=p.reduction_factor
        )
    return optuna.pruners.HyperbandPruner(
        min_resource=p.min_resource, reduction_factor=p.reduction_factor
    )


def should_prune(search: SearchSpec, trials: Sequence[Trial], current: Trial) -> bool:
    """Whether ``current``, a running trial among ``trials``, should be pruned now.

    ``False`` without a pruner or before it wrote a step.
    """
    if search.pruner is None or not current.intermediate:
        return False
    others = [t for t in trials if t.number != current.number]
    if len(search.objectives) > 1:
        return _dominated(search, search.pruner, others, current)
    pruner = make_pruner(search.pruner)
    rungs = search.pruner.kind != "median"
    # successive halving and Hyperband keep each trial's rung values on the trial, written
    # as it is pruned step by step: the finished trials are replayed so (in trial order)
    study = rebuild(search, [] if rungs else others, current.number)
    for t in [*others, current] if rungs else [current]:
        tid = _add_running(study, search, t)
        pruned = _replay(study, pruner, tid, t)
        if t is current:
            return pruned
        _end(study, tid, t)
    return False


def _add_running(study: optuna.Study, search: SearchSpec, t: Trial) -> int:
    dists = distributions(search)
    params = {k: v for k, v in sorted(t.params.items()) if k in dists and v is not None}
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.RUNNING, params=params, distributions={k: dists[k] for k in params}
        )
    )
    return study.get_trials(deepcopy=False)[-1]._trial_id


def _replay(study: optuna.Study, pruner: optuna.pruners.BasePruner, tid: int, t: Trial) -> bool:
    """Report ``t``'s outer loss step by step, asking the pruner at each: pruned at one?

    A member the pruner would have stopped at an earlier step is stopped at this one.
    """
    storage = study._storage  # Optuna has no public way to report to a frozen trial
    steps = sorted(s for s, v in t.intermediate.items() if v and math.isfinite(v[0]))
    for step in steps:
        storage.set_trial_intermediate_value(tid, step, t.intermediate[step][0])
        if pruner.prune(study, storage.get_trial(tid)):
            return True
    return False


def _end(study: optuna.Study, tid: int, t: Trial) -> None:
    ended: dict[str, TrialState] = {
        TrialStatus.COMPLETE: TrialState.COMPLETE,
        TrialStatus.PRUNED: TrialState.PRUNED,
        TrialStatus.FAIL: TrialState.FAIL,
    }
    state = ended.get(t.state, TrialState.RUNNING)
    if state != TrialState.RUNNING:
        values = t.values if state == TrialState.COMPLETE else None
        study._storage.set_trial_state_values(tid, state, values)


def _dominated(search: SearchSpec, p: Pruner, others: Sequence[Trial], current: Trial) -> bool:
    step = max(current.intermediate)
    if step < p.warmup_steps:
        return False
    fields = step_fields(search)
    # the objectives that have a step value, with their directions (the outer loss: minimized)
    signs = [1.0] + [
        1.0 if o.direction == "minimize" else -1.0
        for o in search.objectives[1:]
        if STEP_FIELDS.get(o.metric) in fields[1:]
    ]
    mine = current.intermediate[step]
    peers = [
        t.intermediate[step]
        for t in others
        if t.state == TrialStatus.COMPLETE and step in t.intermediate
        and len(t.intermediate[step]) == len(mine)
    ]  # fmt: skip
    if len(peers) < max(p.startup_trials, 1) or len(mine) != len(signs):
        return False
    beaten_by = sum(dominates(v, mine, signs) for v in peers)
    return 2 * beaten_by >= len(peers)
