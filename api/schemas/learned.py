"""What ``GET /v1/jobs/{id}/learned`` answers: the worker's summary of the learned hparams.

The worker writes it as the job succeeds (``worker.learned``); each part is present only
where the problem has it.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = ["Bars", "LearnedPublic", "Path", "Penalties", "WeightHistogram"]


class Bars(BaseModel):
    """Named positive values, e.g. ``exp(λ_l)`` per layer."""

    labels: list[str]
    values: list[float]


class Penalties(Bars):
    """``exp(λ)`` per feature or per group, largest first (at most 500 listed)."""

    per: str = Field(description="`feature` or `group`")
    count: int = Field(description="how many penalties there are (all, listed or not)")
    named: bool = Field(description="whether the labels are the data set's feature names")


class WeightHistogram(BaseModel):
    """Example weights ``σ(λ_i)`` on ``[0, 1]``: counts per bin, all and by label state."""

    edges: list[float]
    count: int
    all: list[int]
    mean: float
    clean: list[int] | None = Field(None, description="where the problem knows the corruption")
    corrupted: list[int] | None = None
    clean_mean: float | None = None
    corrupted_mean: float | None = None


class Path(BaseModel):
    """Small hyperparameters after each hyper-iteration (thinned to at most 200 points)."""

    key: str = Field(description="the hparams entry, as named in the .npz")
    title: str
    log: bool = Field(description="positive quantities (exp of λ): best on a log axis")
    iteration: list[int]
    series: dict[str, list[float]]


class LearnedPublic(BaseModel):
    """What a succeeded job learned, in the problem's own units."""

    kind: str = Field(description="the problem kind")
    penalties: Penalties | None = None
    example_weights: WeightHistogram | None = None
    layer_decays: Bars | None = None
    step_size: float | None = Field(None, description="the learned inner step size γ")
    paths: list[Path] = []
