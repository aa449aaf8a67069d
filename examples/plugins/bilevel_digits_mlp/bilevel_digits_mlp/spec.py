"""The ``digits_mlp`` kind's options and its entry point: pydantic only, no torch."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from jobs.kinds.base import DatasetInfo, Sizes
from jobs.kinds.tables import UUID_PATTERN
from jobs.plugins import ProblemOptions, ProblemPlugin

__all__ = ["PLUGIN", "DigitsMLPOptions", "fit", "sizes"]

PIXELS, CLASSES = 64, 10


class DigitsMLPOptions(ProblemOptions):
    """A tanh MLP on scikit-learn's digits with a learned L2 penalty per input pixel.

    One hidden layer of ``hidden`` units; 64 penalties on the first layer's input columns
    and one on the output layer are learned (``pixel_penalty``, ``output_penalty``: logs).
    ``dataset`` trains on a team's own 8x8 digit images instead (an uploaded data set's
    id, 64 features and 10 classes; its first ``n_train`` and ``n_val`` rows).
    """

    dataset: Annotated[str, Field(pattern=f"^{UUID_PATTERN}$")] | None = None

    hidden: Annotated[int, Field(ge=1, le=256)] = 16
    n_train: Annotated[int, Field(ge=10, le=1000)] = 300
    n_val: Annotated[int, Field(ge=10, le=700)] = 300
    init_penalty: Annotated[float, Field(gt=0, le=1e3)] = 1e-3


def fit(options: DigitsMLPOptions, data: DatasetInfo) -> list[str]:
    """What a data set lacks for this problem: 8x8 images of 10 classes."""
    if (data.task, data.n_classes, data.n_features) == ("classification", CLASSES, PIXELS):
        return []
    return [
        f"digits_mlp needs {PIXELS} features and {CLASSES} classes; {data.name} has "
        f"{data.n_features} features ({data.task}, {data.n_classes} classes)"
    ]


def sizes(options: DigitsMLPOptions, inner: object, data: DatasetInfo | None) -> Sizes:
    """Floats kept: the weights, one step's activations and gradients, the penalties."""
    h, n = options.hidden, options.n_train
    params = (PIXELS + 1) * h + (h + 1) * CLASSES
    return Sizes(state=params, step=n * PIXELS + 4 * n * (h + CLASSES) + 3 * params, hparams=65)


PLUGIN = ProblemPlugin(
    options=DigitsMLPOptions,
    factory="bilevel_digits_mlp.problem:build",
    dataset_option="dataset",
    fit=fit,
    sizes=sizes,
)
