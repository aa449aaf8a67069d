"""Errors raised by the estimator library.

The tree is small on purpose (as in httpx and Celery)::

    BilevelError                  base of everything raised here
    ├── ConfigurationError        bad argument or problem definition; also a ValueError
    ├── DivergenceError           a loss, an iterate or a hypergradient is not finite
    └── NonConvergenceError       an iterative solver stopped before reaching its tolerance

Every message names the offending value and, where there is one, the limit it broke.
"""

from __future__ import annotations

__all__ = ["BilevelError", "ConfigurationError", "DivergenceError", "NonConvergenceError"]


class BilevelError(Exception):
    """Base class of every error raised by :mod:`core`."""


class ConfigurationError(BilevelError, ValueError):
    """An argument, hyperparameter structure or loss has the wrong value, type or shape."""


class DivergenceError(BilevelError, ArithmeticError):
    """A loss, an inner iterate or a hypergradient became NaN or infinite.

    Attributes:
        where: what was not finite, e.g. ``"outer loss"`` or ``"inner iterate w_T"``.
        iteration: the hyper-iteration at which it happened, when known.
    """

    def __init__(self, message: str, *, where: str = "", iteration: int | None = None):
        super().__init__(message)
        self.where = where
        self.iteration = iteration


class NonConvergenceError(BilevelError, RuntimeError):
    """An iterative solver (CG, Neumann) ran out of iterations above its tolerance.

    Attributes:
        residual: the relative residual reached.
        iters: the number of iterations run.
    """

    def __init__(self, message: str, *, residual: float, iters: int):
        super().__init__(message)
        self.residual = residual
        self.iters = iters
