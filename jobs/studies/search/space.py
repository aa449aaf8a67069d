"""A study's search, as submitted: the space, the sampler, the budget, the objectives.

``{"params": {"outer.lr": {"type": "float", "low": 1e-3, "high": 1, "log": true},
"hypergradient.K": {"type": "categorical", "choices": [1, 5, 25]}}, "sampler": "tpe",
"n_trials": 20, "max_concurrent": 2, "objectives": [{"metric": "final_outer_loss"}],
"pruner": {"kind": "median"}, "seed": 0}``. The models check types and bounds only;
:func:`jobs.studies.search.checks.check_search` checks the rest (ranges, paths, the members they
admit) and names each field. Pure pydantic: the API reads these without Optuna.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "SAMPLERS",
    "Budget",
    "CategoricalParam",
    "FloatParam",
    "IntParam",
    "Objective",
    "Param",
    "Pruner",
    "SearchSpec",
    "WarmStart",
]

#: the samplers a search may name (Optuna's TPE, CMA-ES, GP, random, Sobol QMC, grid)
SAMPLERS = ("tpe", "cmaes", "gp", "random", "qmc", "grid")

Scalar = bool | int | float | str | None


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class FloatParam(_Model):
    """A real in ``[low, high]``, sampled on a log scale when ``log`` (then ``low > 0``)."""

    type: Literal["float"]
    low: float
    high: float
    log: bool = False


class IntParam(_Model):
    """An integer in ``[low, high]`` on a grid of ``step``."""

    type: Literal["int"]
    low: int
    high: int
    step: Annotated[int, Field(ge=1)] = 1
    log: bool = False


class CategoricalParam(_Model):
    """One of ``choices`` (JSON scalars)."""

    type: Literal["categorical"]
    choices: Annotated[list[Scalar], Field(min_length=1, max_length=100)]


Param = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]


class Objective(_Model):
    """A final number of a member's summary, and whether smaller or larger is better.

    ``final_outer_loss``, a metric (``val_acc`` or ``metrics.val_acc``), ``s_per_iteration``
    or ``peak_bytes``.
    """

    metric: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.]+$")]
    direction: Literal["minimize", "maximize"] = "minimize"


class Budget(_Model):
    """Compute the members may spend in all: hyper-iterations run, or seconds of running."""

    iterations: Annotated[int, Field(ge=1, le=100_000_000)] | None = None
    seconds: Annotated[float, Field(gt=0, le=1e8)] | None = None


class Pruner(_Model):
    """Stop members that fall behind at a hyper-iteration boundary (on their outer loss).

    ``median``: below the median of finished members at the same step, after
    ``warmup_steps``; ``successive_halving`` / ``hyperband``: rungs from ``min_resource``
    hyper-iterations growing by ``reduction_factor``. A multi-objective study prunes a
    member dominated at the same step by at least half of the finished ones instead.
    """

    kind: Literal["median", "successive_halving", "hyperband"]
    warmup_steps: Annotated[int, Field(ge=0, le=1_000_000)] = 0
    startup_trials: Annotated[int, Field(ge=0, le=1000)] = 2
    min_resource: Annotated[int, Field(ge=1, le=1_000_000)] = 1
    reduction_factor: Annotated[int, Field(ge=2, le=10)] = 3


# ids arrive as JSON strings, which strict mode refuses for a UUID
_Id = Annotated[uuid.UUID, Field(strict=False)]


class WarmStart(_Model):
    """Earlier results the sampler sees before its first ask: the team's studies and jobs.

    Their finished members (succeeded jobs) whose parameters lie in this search's space are
    read once, when the study is created, and kept with it (see
    :mod:`jobs.studies.search.warm`); the others are skipped and counted.
    """

    studies: Annotated[list[_Id], Field(max_length=20)] = Field(default_factory=list)
    jobs: Annotated[list[_Id], Field(max_length=100)] = Field(default_factory=list)


class SearchSpec(_Model):
    """A search over dotted spec paths of the study's base: members asked of a sampler."""

    params: dict[str, Param] = Field(description="dotted spec path -> its range or choices")
    sampler: Literal["tpe", "cmaes", "gp", "random", "qmc", "grid"] = "tpe"
    n_trials: Annotated[int, Field(ge=1, le=10_000)] | None = None
    budget: Budget | None = None
    max_concurrent: Annotated[int, Field(ge=1, le=64)] = 2
    objectives: Annotated[list[Objective], Field(min_length=1, max_length=4)] = Field(
        default_factory=lambda: [Objective(metric="final_outer_loss")]
    )
    pruner: Pruner | None = None
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0
    warm_start: WarmStart | None = None

    @property
    def directions(self) -> list[Literal["minimize", "maximize"]]:
        """Each objective's direction, in order."""
        return [o.direction for o in self.objectives]
