"""The one entry point for a single hypergradient."""

from __future__ import annotations

from typing import Any

from core.dynamics import GradientDescent
from core.errors import ConfigurationError
from core.estimators.base import Estimator, HypergradientResult
from core.problem import BilevelProblem
from core.tree import Tree

__all__ = ["hypergradient"]


def hypergradient(
    problem: BilevelProblem[Any, Any],
    hparams: Tree,
    dynamics: GradientDescent,
    estimator: Estimator,
) -> HypergradientResult:
    """Compute ``d_λ f`` (Eq. 5) or an estimate of it at ``hparams``.

    Args:
        problem: the bilevel problem (``init``, ``inner_loss``, ``outer_loss``).
        hparams: ``λ``, a tensor or a dict of named tensors; never modified.
        dynamics: the inner optimizer unrolled for ``T`` steps (Eq. 4).
        estimator: ``Full()``, ``Truncated(K)``, ``Forward()``, ``Checkpointed()`` or
            ``Implicit()``.

    Returns:
        A :class:`HypergradientResult` whose ``grad`` has the structure of ``hparams``.

    Raises:
        ConfigurationError: bad arguments (the message names the value).
        DivergenceError: a non-finite loss, iterate or hypergradient.

    Example:
        >>> import torch, core
        >>> res = core.hypergradient(core.problems.Toy(), torch.ones(2, dtype=torch.float64),
        ...                          core.GradientDescent(steps=100, lr=0.1), core.Truncated(K=5))
        >>> round(res.outer_loss, 3) > 0
        True
    """
    if not isinstance(estimator, Estimator):
        raise ConfigurationError(
            f"estimator must be a core estimator such as core.Full(), got {estimator!r}"
        )
    return estimator(problem, hparams, dynamics)
