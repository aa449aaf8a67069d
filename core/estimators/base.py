"""The interface every hypergradient estimator implements, and what they share.

An estimator is a small configured object; calling it with a problem, ``hparams`` and the
inner dynamics returns a :class:`HypergradientResult`. It never writes ``.grad`` and never
mutates its inputs: it differentiates with respect to fresh leaves that copy ``hparams``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor

from core.dynamics import GradientDescent
from core.errors import ConfigurationError, DivergenceError
from core.problem import BilevelProblem
from core.tree import Leaves, Spec, Tree, all_finite, flatten, tree_norm, unflatten, zeros_for_none
from core.validate import scalar_loss

__all__ = ["Estimator", "HypergradientResult"]


@dataclass(frozen=True)
class HypergradientResult:
    """What an estimator returns.

    Attributes:
        grad: the exact ``d_λ f`` (Eq. 5) or the estimate (``h_{T-K}``, Eq. 8), with the
            structure of ``hparams`` (a tensor or a dict of tensors), detached.
        outer_loss: ``f(w_T, λ)`` as a float.
        params: ``w_T`` with the structure ``problem.init`` returns, detached.
        info: diagnostics: ``method``, ``T``, ``grad_norm``, ``grad_w_norm``
            (``||∇_{ŵ*} f||``), ``stored_bytes`` (states kept outside autograd at the peak)
            and estimator-specific entries (``K``, ``segment``, ``residual``, ``converged``).
    """

    grad: Tree
    outer_loss: float
    params: Tree
    info: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Estimator(Protocol):
    """A hypergradient method: ``estimator(problem, hparams, dynamics) -> HypergradientResult``.

    Attributes:
        name: the registry name a job spec uses ("full", "truncated", ...).
        exact: whether the result is ``d_λ f`` of Eq. (5) up to float rounding.
    """

    name: ClassVar[str]

    # read-only, so that a class constant (``exact: ClassVar[bool] = True``) and a property
    # delegating to a wrapped estimator (:class:`core.Graphed`) both implement it
    @property
    def exact(self) -> bool:
        """Whether the result is ``d_λ f`` of Eq. (5) up to float rounding."""
        ...

    def __call__(
        self, problem: BilevelProblem[Any, Any], hparams: Tree, dynamics: GradientDescent
    ) -> HypergradientResult:
        """``d_λ f`` (Eq. 5), or an estimate of it, at ``hparams``.

        Args:
            problem: the bilevel problem.
            hparams: ``λ``; never modified.
            dynamics: the inner optimizer and its horizon ``T`` (Eq. 4).

        Returns:
            A :class:`HypergradientResult`.
        """
        ...


@dataclass(frozen=True)
class Setup:
    """Validated inputs shared by the estimators' implementations."""

    hp: Leaves  # fresh leaves that require grad
    hp_const: Leaves  # the same values, cut from every graph
    hp_spec: Spec
    w_spec: Spec

    def tree(self, leaves: Leaves) -> Tree:
        return unflatten(self.hp_spec, leaves)


def prepare(problem: BilevelProblem[Any, Any], hparams: Tree, dynamics: GradientDescent) -> Setup:
    """Check the arguments and copy ``hparams`` into fresh autograd leaves.

    Raises:
        ConfigurationError: wrong types, missing ``lr_key`` entry.
        DivergenceError: ``hparams`` holds NaN or infinity.
    """
    if not isinstance(problem, BilevelProblem):
        raise ConfigurationError(
            f"problem must be a core.BilevelProblem, got {type(problem).__name__}"
        )
    if not isinstance(dynamics, GradientDescent):
        raise ConfigurationError(
            f"dynamics must be a core.GradientDescent, got {type(dynamics).__name__}"
        )
    leaves, spec = flatten(hparams, "hparams")
    dynamics.check_hparams(hparams)
    if not all_finite(leaves):
        raise DivergenceError("hparams contain NaN or infinity", where="hparams")
    const = tuple(x.detach() for x in leaves)
    hp = tuple(x.detach().clone().requires_grad_(True) for x in leaves)
    with torch.no_grad():
        _, w_spec = flatten(problem.init(unflatten(spec, const)), "init(hparams)")
    return Setup(hp=hp, hp_const=const, hp_spec=spec, w_spec=w_spec)


def outer_terms(
    problem: BilevelProblem[Any, Any], setup: Setup, w: Leaves
) -> tuple[float, Leaves, Leaves]:
    """``f(w_T, λ)``, ``∇_{ŵ*} f`` and ``∇_λ f`` at a detached ``w_T`` (the start of Eq. 6)."""
    w = tuple(x.detach().requires_grad_(True) for x in w)
    with torch.enable_grad():
        loss = scalar_loss(
            problem.outer_loss(unflatten(setup.w_spec, w), setup.tree(setup.hp)), "outer"
        )
        grads = torch.autograd.grad(loss, w + setup.hp, allow_unused=True)
    grads = zeros_for_none(grads, w + setup.hp)
    return float(loss.detach()), grads[: len(w)], grads[len(w) :]


def finish(
    setup: Setup, grad: Leaves, loss: float, w: Leaves, info: dict[str, Any]
) -> HypergradientResult:
    """Check finiteness and package a result in the user's structures.

    Raises:
        DivergenceError: the outer loss, ``w_T`` or the hypergradient is not finite.
    """
    if not all_finite(w):
        raise DivergenceError(
            f"inner iterate w_T is not finite after T={info.get('T')} steps "
            "(is the inner step size too large for this problem?)",
            where="inner iterate w_T",
        )
    if not math.isfinite(loss):
        raise DivergenceError(f"outer loss f(w_T, λ) is {loss}", where="outer loss")
    if not all_finite(grad):
        raise DivergenceError("hypergradient is not finite", where="hypergradient")
    info.setdefault("grad_norm", tree_norm(grad))
    return HypergradientResult(
        grad=setup.tree(tuple(g.detach() for g in grad)),
        outer_loss=loss,
        params=unflatten(setup.w_spec, tuple(x.detach() for x in w)),
        info=info,
    )


def add(a: Leaves, b: tuple[Tensor | None, ...]) -> Leaves:
    """``a + b`` leaf by leaf, where ``None`` in ``b`` stands for zero."""
    return tuple(x if y is None else x + y for x, y in zip(a, b))
