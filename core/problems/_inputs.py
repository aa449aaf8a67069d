"""Checks and shaping shared by the problems built on labelled train/val/test sets."""

from __future__ import annotations

import torch
from torch import Tensor

from core.errors import ConfigurationError


def check_labelled_sets(sets: dict[str, tuple[Tensor, Tensor]]) -> int:
    """Raise unless every ``(x, y)`` is ``[N, d]`` / ``[N]`` with the first set's ``d`` and dtype.

    Returns:
        The number of classes the labels imply (``max label + 1``).
    """
    d, dtype = None, None
    for name, (x, y) in sets.items():
        if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0]:
            raise ConfigurationError(
                f"x_{name} must be [N, d] and y_{name} [N], got {tuple(x.shape)} and "
                f"{tuple(y.shape)}"
            )
        if d is None:
            first, d, dtype = name, x.shape[1], x.dtype
        elif x.shape[1] != d or x.dtype != dtype:
            raise ConfigurationError(
                f"x_{name} has {x.shape[1]} features of {x.dtype}; x_{first} has {d} of {dtype}"
            )
    return int(max(int(y.max()) for _, y in sets.values())) + 1


def with_bias(x: Tensor) -> Tensor:
    """Append a column of ones, so a linear model's last weight column is its bias."""
    return torch.cat([x, x.new_ones(x.shape[0], 1)], dim=1)


def accuracy(logits: Tensor, labels: Tensor) -> float:
    """Fraction of rows whose largest logit is at the label."""
    return float((logits.argmax(dim=1) == labels).double().mean())
