"""What one hyper-iteration of a stochastic, warm-started K-RMD run sees of the problem.

:func:`core.fit` with ``warm_start``, ``outer_batches`` or an inner step-size schedule wraps
the problem in a :class:`HyperIteration` view and points it, before every hyper-iteration
``τ``, at that iteration's start ``w_0``, inner steps and outer batch.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from core.problem import BilevelProblem
from core.problems.batches import minibatch
from core.tree import Tree

__all__ = ["HyperIteration", "hyper_iteration"]

# the outer batches' draws must not follow the inner minibatches' stream
_OUTER_STREAM = 104729


class HyperIteration(BilevelProblem[Any, Any]):
    """The problem as hyper-iteration ``τ`` sees it: warm start, fresh batches, outer batch.

    **Warm start.** ``w_0`` of hyper-iteration ``τ`` is ``w_T`` of hyper-iteration ``τ-1``
    (detached: it is a constant in ``λ``, so ``B_0 = 0`` in Eq. 5). Unrolling ``T`` steps from
    there, the iterates stay near ``w*(λ)``, so few steps (small ``T``) suffice. What the
    estimators differentiate changes: ``w_T`` now depends on ``λ_τ`` through these ``T`` steps
    only, while the run as a whole has taken ``τ·T`` inner steps. K-RMD's ``h_{T-K}`` (Eq. 8)
    is the exact derivative of the ``K`` last steps of that long trajectory, i.e. K-RMD over
    an infinite horizon truncated at ``K``; full RMD (``K = T``) becomes ``T``-RMD of it. The
    bias is therefore that of Prop. 3.1 with the horizon replaced by the short window:
    ``||h - d_λ f|| <= (1-γα)^K/(γα) · ||∇_{ŵ*} f|| · M_B`` (Eq. 10) against the implicit
    hypergradient (Eq. 11) once the iterates sit near ``w*(λ)`` (Prop. 3.6), not the
    unrolled ``T``-step one of Eq. (5): warm starts trade the dependence of ``ŵ*`` on the
    initial point (which Theorem 3.4 exploits, "``T`` large enough") for a cheaper, shorter
    effective horizon. Derivatives through earlier hyper-iterations (``λ_{τ-1}`` shaped
    ``w_0``) are dropped, which is harmless while ``λ`` moves slowly.

    **Fresh minibatches.** Inner step ``t`` of hyper-iteration ``τ`` reads the base problem's
    step ``(τ-1)·T + t`` (:meth:`core.BilevelProblem.at_step`), so successive
    hyper-iterations walk through the data instead of re-reading the same ``T`` batches.

    **Outer minibatch.** With an outer batch index, ``f`` is that batch's (an unbiased
    estimate of the full ``f`` when batches have equal sizes).

    Args:
        base: the problem.
    """

    def __init__(self, base: BilevelProblem[Any, Any]):
        self.base = base
        self.w0: Tree | None = None
        self.offset: int | None = None
        self.outer_index: int | None = None
        self.fresh = False

    def init(self, hparams: Any) -> Any:
        """The warm start ``w_{T}`` of the previous hyper-iteration, or the base's ``w_0``."""
        return self.w0 if self.w0 is not None else self.base.init(hparams)

    def inner_loss(self, params: Any, hparams: Any) -> Tensor:
        """The base's ``g``."""
        return self.base.inner_loss(params, hparams)

    def outer_loss(self, params: Any, hparams: Any) -> Tensor:
        """The base's ``f``, or that of the outer batch."""
        if self.outer_index is None:
            return self.base.outer_loss(params, hparams)
        return self.base.on_batch("outer", self.outer_index).outer_loss(params, hparams)

    def at_step(self, t: int) -> BilevelProblem[Any, Any]:
        """The base's view of step ``offset + t``; ``self`` when the base has no batches."""
        view = self.base.at_step(t if self.offset is None else self.offset + t)
        return self if view is self.base else view

    def n_batches(self, level: str) -> int:
        """The base's."""
        return self.base.n_batches(level)

    def on_batch(self, level: str, index: int) -> BilevelProblem[Any, Any]:
        """The base's."""
        return self.base.on_batch(level, index)

    def metrics(self, params: Any, hparams: Any) -> dict[str, float]:
        """The base's."""
        return self.base.metrics(params, hparams)

    def initial_hparams(self) -> Any:
        """The base's."""
        return self.base.initial_hparams()

    def point(self, tau: int, steps: int, w0: Tree | None, outer: bool, seed: int) -> None:
        """Set what hyper-iteration ``τ`` (1-based) of ``steps`` inner steps sees."""
        self.w0 = w0
        self.offset = (tau - 1) * steps if self.fresh else None
        n = self.base.n_batches("outer")
        self.outer_index = (
            int(minibatch(n, 1, seed + _OUTER_STREAM, tau - 1)[0]) if outer and n > 1 else None
        )


class _ClosedForm(HyperIteration):
    """A :class:`HyperIteration` of a base with a closed-form ``∇_w g``."""

    def inner_grad(self, params: Any, hparams: Any) -> Any:
        """The base's closed form."""
        grad = self.base.inner_grad
        assert grad is not None  # chosen by hyper_iteration() for bases that have one
        return grad(params, hparams)


def hyper_iteration(base: BilevelProblem[Any, Any], *, fresh_batches: bool) -> HyperIteration:
    """The view for ``base``; ``fresh_batches`` offsets inner steps by ``(τ-1)·T``."""
    view = _ClosedForm(base) if base.inner_grad is not None else HyperIteration(base)
    view.fresh = fresh_batches
    return view
