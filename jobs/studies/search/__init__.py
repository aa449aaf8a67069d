"""Search studies: a space over spec paths, a sampler and pruner (Optuna's), the objectives.

``space`` holds the submitted models, ``checks`` their checks, ``trials`` the store's view
of a trial, ``sampling`` the ask, ``pruning`` the stop, ``advance`` the step that adds the
next members under the study's lock. ``sampling`` and ``pruning`` import Optuna; the rest
does not.
"""

from jobs.studies.search.space import SAMPLERS, SearchSpec
from jobs.studies.search.trials import Trial, pareto_front

__all__ = ["SAMPLERS", "SearchSpec", "Trial", "pareto_front"]
