"""What the single-loop methods share: stochastic first- and second-order oracles, sampling.

Every oracle evaluates one batch view (:meth:`core.BilevelProblem.on_batch`) at detached
leaves and returns detached leaves: the methods keep no autograd graph between steps, so a
step's memory is that of one batch's double-backward pass.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from core.errors import ConfigurationError, DivergenceError
from core.problem import BilevelProblem
from core.problems.batches import minibatch
from core.tree import Leaves, Spec, all_finite, flatten, unflatten, zeros_for_none
from core.validate import scalar_loss

SCHEDULES = ("constant", "inv_sqrt")
# offsets the outer level's sampling seed from the inner one's: two independent streams
_OUTER_STREAM = 7919


def draw(problem: BilevelProblem[Any, Any], level: str, seed: int, k: int) -> int:
    """Batch index of step ``k`` (1-based) at ``level``: a pure function of ``(seed, k)``.

    Random reshuffling: every epoch of ``n_batches`` steps visits each batch once, in an
    order drawn from ``(seed, epoch)`` (:func:`core.problems.minibatch` with one row per
    step), so a resumed run draws exactly the batches the uninterrupted one would.
    """
    n = problem.n_batches(level)
    if n == 1:
        return 0
    stream = seed if level == "inner" else seed + _OUTER_STREAM
    return int(minibatch(n, 1, stream, k - 1)[0])


def scaled(lr: float, schedule: str, k: int) -> float:
    """``lr`` at step ``k``: constant, or ``lr / sqrt(k)`` (the decay of Theorem 3.3)."""
    return lr / math.sqrt(k) if schedule == "inv_sqrt" else lr


def check_schedule(schedule: Any) -> None:
    """Raise :class:`ConfigurationError` unless ``schedule`` is a known name."""
    if schedule not in SCHEDULES:
        raise ConfigurationError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")


def _leaves(x: Leaves) -> Leaves:
    return tuple(t.detach().requires_grad_(True) for t in x)


def first_order(
    problem: BilevelProblem[Any, Any],
    level: str,
    w: Leaves,
    lam: Leaves,
    specs: tuple[Spec, Spec],
) -> tuple[float, Leaves, Leaves]:
    """The loss and ``(∇_w, ∇_λ)`` of ``g`` (``level="inner"``) or ``f`` at ``(w, λ)``."""
    wl, hl = _leaves(w), _leaves(lam)
    with torch.enable_grad():
        fn = problem.inner_loss if level == "inner" else problem.outer_loss
        loss = scalar_loss(fn(unflatten(specs[0], wl), unflatten(specs[1], hl)), level)
        grads = zeros_for_none(torch.autograd.grad(loss, wl + hl, allow_unused=True), wl + hl)
    return float(loss.detach()), grads[: len(w)], grads[len(w) :]


def second_order(
    problem: BilevelProblem[Any, Any],
    w: Leaves,
    lam: Leaves,
    v: Leaves,
    specs: tuple[Spec, Spec],
) -> tuple[Leaves, Leaves, Leaves]:
    """``(∇_w g, ∇²_ww g · v, ∇²_λw g · v)`` of one inner batch, by one double backward.

    ``∇_w g`` comes from the problem's closed form when it has one (written with
    differentiable operations), else from autograd; the two products are the gradient of
    ``<∇_w g, v>`` with respect to ``(w, λ)``.
    """
    wl, hl = _leaves(w), _leaves(lam)
    with torch.enable_grad():
        W, H = unflatten(specs[0], wl), unflatten(specs[1], hl)
        if problem.inner_grad is not None:
            g, _ = flatten(problem.inner_grad(W, H), "inner_grad")
        else:
            loss = scalar_loss(problem.inner_loss(W, H), "inner")
            g = tuple(torch.autograd.grad(loss, wl, create_graph=True))
        dot = torch.stack([(gi * vi).sum() for gi, vi in zip(g, v)]).sum()
        prods = torch.autograd.grad(dot, wl + hl, allow_unused=True)
    prods = zeros_for_none(prods, wl + hl)
    return tuple(gi.detach() for gi in g), prods[: len(w)], prods[len(w) :]


def axpy(x: Leaves, a: float, y: Leaves) -> Leaves:
    """``x + a·y`` leaf by leaf, as new tensors (states are never updated in place)."""
    return tuple(torch.add(xi, yi, alpha=a) for xi, yi in zip(x, y))


def add(x: Leaves, y: Leaves) -> Leaves:
    """``x + y`` leaf by leaf."""
    return tuple(xi + yi for xi, yi in zip(x, y))


def check_finite(k: int, **parts: Leaves) -> None:
    """Raise :class:`DivergenceError` naming the first non-finite part after step ``k``."""
    # one reduction and one host sync in the common case: a sum of sums is finite only if
    # every entry is (an inf or a NaN anywhere makes it inf or NaN)
    total = torch.stack([x.sum() for leaves in parts.values() for x in leaves]).sum()
    if bool(torch.isfinite(total)):
        return
    for name, leaves in parts.items():
        if not all_finite(leaves):
            raise DivergenceError(
                f"step {k}: {name} is not finite (are the step sizes too large?)",
                where=name,
                iteration=k,
            )
