"""Argument checks shared across the library, each raising :class:`ConfigurationError`.

Every message names the argument and echoes the bad value, as the rest of :mod:`core` does
(``"steps must be an integer >= 1, got 0"``), so a caller several layers up can tell which
setting to fix.
"""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor

from core.errors import ConfigurationError

__all__ = ["finite_positive", "integer_at_least", "scalar_loss"]


def scalar_loss(loss: Any, which: str) -> Tensor:
    """``loss`` as a 0-d tensor, checking that a problem's objective returned one number.

    ``g(w, λ)`` and ``f(w, λ)`` of Eq. (1) are scalars; a loss left unreduced (``[B]`` per
    example or per task) would otherwise be summed silently by autograd's implicit
    ``grad_outputs`` or fail deep inside ``torch.autograd.grad``.

    Args:
        loss: what ``problem.inner_loss`` or ``problem.outer_loss`` returned.
        which: ``"inner"`` or ``"outer"``, for the message.

    Returns:
        ``loss`` reshaped to ``()`` (a view: the autograd graph is kept).

    Raises:
        ConfigurationError: ``loss`` is not a tensor with exactly one element.
    """
    if type(loss) is Tensor and loss.dim() == 0:  # the common case, checked cheaply
        return loss
    if not isinstance(loss, Tensor) or loss.numel() != 1:
        shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
        raise ConfigurationError(f"{which}_loss must return a scalar tensor, got {shape}")
    # a 0-d loss is returned as is: a reshape would add a node to every step's graph
    return loss if loss.dim() == 0 else loss.reshape(())


def integer_at_least(value: Any, name: str, minimum: int = 1, *, optional: bool = False) -> None:
    """Raise unless ``value`` is an ``int`` (not a ``bool``) ``>= minimum``, or ``None`` if allowed.

    ``bool`` is refused although it is an ``int`` subclass: ``steps=True`` is a mistake, not
    one step.

    Args:
        value: the argument to check.
        name: the argument's name, for the message.
        minimum: the smallest value accepted.
        optional: also accept ``None`` (the argument's "choose for me" value).

    Raises:
        ConfigurationError: ``value`` is out of range or of another type.
    """
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        allowed = " or None" if optional else ""
        raise ConfigurationError(f"{name} must be an integer >= {minimum}{allowed}, got {value!r}")


def finite_positive(value: Any, name: str, *, optional: bool = False) -> None:
    """Raise unless ``value`` is a finite real number ``> 0`` (a step size), or allowed ``None``.

    Args:
        value: the argument to check.
        name: the argument's name, for the message.
        optional: also accept ``None``.

    Raises:
        ConfigurationError: ``value`` is not a finite positive ``int`` or ``float``.
    """
    if optional and value is None:
        return
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        allowed = " or None" if optional else ""
        raise ConfigurationError(f"{name} must be a finite number > 0{allowed}, got {value!r}")
