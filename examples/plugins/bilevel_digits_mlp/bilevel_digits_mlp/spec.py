"""The ``digits_mlp`` kind's options and its entry point: pydantic only, no torch."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from jobs.plugins import ProblemOptions, ProblemPlugin

__all__ = ["PLUGIN", "DigitsMLPOptions"]


class DigitsMLPOptions(ProblemOptions):
    """A tanh MLP on scikit-learn's digits with a learned L2 penalty per input pixel.

    One hidden layer of ``hidden`` units; 64 penalties on the first layer's input columns
    and one on the output layer are learned (``pixel_penalty``, ``output_penalty``: logs).
    """

    hidden: Annotated[int, Field(ge=1, le=256)] = 16
    n_train: Annotated[int, Field(ge=10, le=1000)] = 300
    n_val: Annotated[int, Field(ge=10, le=700)] = 300
    init_penalty: Annotated[float, Field(gt=0, le=1e3)] = 1e-3


PLUGIN = ProblemPlugin(options=DigitsMLPOptions, factory="bilevel_digits_mlp.problem:build")
