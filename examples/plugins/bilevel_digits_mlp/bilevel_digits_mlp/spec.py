"""The ``digits_mlp`` kind's options and its entry point: pydantic only, no torch."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from jobs.plugins import ProblemOptions, ProblemPlugin

__all__ = ["PLUGIN", "DigitsMLPOptions"]


class DigitsMLPOptions(ProblemOptions):
    """A one-hidden-layer tanh MLP on scikit-learn's digits with a learned L2 penalty per
    input pixel (64) and one on the output layer; the learned ``pixel_penalty`` and
    ``output_penalty`` are logs of the penalties."""

    hidden: Annotated[int, Field(ge=1, le=256)] = 16
    n_train: Annotated[int, Field(ge=10, le=1000)] = 300
    n_val: Annotated[int, Field(ge=10, le=700)] = 300
    init_penalty: Annotated[float, Field(gt=0, le=1e3)] = 1e-3


PLUGIN = ProblemPlugin(options=DigitsMLPOptions, factory="bilevel_digits_mlp.problem:build")
