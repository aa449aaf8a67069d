"""Inner optimizers as the dynamical system of Eq. (4): ``w_{t+1} = Ξ_{t+1}(w_t, λ)``.

The state of the system is a flat tuple of tensors: the parameter leaves, followed by the
velocity leaves when heavy-ball momentum is on (footnote 2 of the paper: "other internal
states, e.g. momentum"). Estimators only ever call :meth:`GradientDescent.init_state`,
:meth:`GradientDescent.step` and :meth:`GradientDescent.params`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from core.errors import ConfigurationError
from core.problem import BilevelProblem
from core.tree import Leaves, Spec, Tree, flatten, unflatten, zeros_for_none
from core.validate import finite_positive, integer_at_least, scalar_loss

__all__ = ["GradientDescent"]


@dataclass(frozen=True)
class GradientDescent:
    """Gradient descent with optional heavy-ball momentum and a learnable step size.

    The transition ``Ξ`` of Eq. (4) is, with ``γ`` the step size and ``μ`` the momentum::

        v_{t+1} = μ v_t + ∇_w g(w_t, λ)          (v_0 = 0; skipped when μ = 0)
        w_{t+1} = w_t - γ v_{t+1}

    so with ``μ = 0`` it is ``Ξ(w, λ) = w - γ ∇_w g(w, λ)`` as in Prop. 3.1.

    Args:
        steps: the horizon ``T >= 1``.
        lr: the step size ``γ > 0``; with ``lr_key`` it is the scale of the learned one.
        momentum: ``μ`` in ``[0, 1)``.
        lr_key: name of a scalar entry of a dict ``hparams`` that holds ``log(γ / lr)``, so the
            step size ``γ = lr · exp(hparams[lr_key])`` is a hyperparameter, positive by
            construction, and ``hparams[lr_key] = 0`` starts at ``lr``.

    Raises:
        ConfigurationError: if an argument is out of range.

    Example:
        >>> GradientDescent(steps=100, lr=0.1).steps
        100
    """

    steps: int
    lr: float = 0.1
    momentum: float = 0.0
    lr_key: str | None = None

    def __post_init__(self) -> None:
        integer_at_least(self.steps, "steps")
        finite_positive(self.lr, "lr")
        if not (isinstance(self.momentum, (int, float)) and 0.0 <= self.momentum < 1.0):
            raise ConfigurationError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if self.lr_key is not None and not isinstance(self.lr_key, str):
            raise ConfigurationError(f"lr_key must be a str or None, got {self.lr_key!r}")

    # -- the dynamical system -------------------------------------------------------------

    def step_size(self, hparams: Tree) -> Tensor | float:
        """The step size ``γ`` at ``hparams``: ``lr``, or ``lr · exp(hparams[lr_key])``."""
        if self.lr_key is None:
            return self.lr
        return self.lr * torch.exp(hparams[self.lr_key])  # type: ignore[index]

    def check_hparams(self, hparams: Tree) -> None:
        """Raise if ``hparams`` lacks the scalar entry ``lr_key`` names."""
        if self.lr_key is None:
            return
        if not isinstance(hparams, dict) or self.lr_key not in hparams:
            raise ConfigurationError(
                f"lr_key={self.lr_key!r} needs a dict hparams with that key, got "
                f"{list(hparams) if isinstance(hparams, dict) else type(hparams).__name__}"
            )
        if hparams[self.lr_key].numel() != 1:
            raise ConfigurationError(
                f"hparams[{self.lr_key!r}] must hold one number (log step size), "
                f"got shape {tuple(hparams[self.lr_key].shape)}"
            )

    def init_state(self, problem: BilevelProblem[Any, Any], hparams: Tree) -> tuple[Leaves, Spec]:
        """``s_0 = (w_0, v_0)`` with ``w_0 = problem.init(hparams)`` and ``v_0 = 0``."""
        w, spec = flatten(problem.init(hparams), what="init(hparams)")
        if self.momentum:
            w = w + tuple(torch.zeros_like(x) for x in w)
        return w, spec

    def params(self, state: Leaves) -> Leaves:
        """The parameter leaves ``w_t`` of a state."""
        return state[: len(state) // 2] if self.momentum else state

    def step(
        self,
        problem: BilevelProblem[Any, Any],
        state: Leaves,
        hparams: Tree,
        spec: Spec,
        *,
        create_graph: bool,
        t: int | None = None,
    ) -> Leaves:
        """One transition ``s_{t+1} = Ξ_{t+1}(s_t, λ)``.

        Args:
            problem: the bilevel problem.
            state: ``s_t``.
            hparams: ``λ``; detach it when no graph to ``λ`` is wanted.
            spec: the structure of ``w`` (from :meth:`init_state`).
            create_graph: record the step for a later backward pass through it. When false,
                the returned state carries no graph at all.
            t: the step's index, for problems whose inner loss changes per step
                (:meth:`core.BilevelProblem.at_step`, minibatches); ``None`` for the whole
                problem.
        """
        if t is not None:
            problem = problem.at_step(t)
        w = state[: len(state) // 2] if self.momentum else state
        grad = inner_grad(problem, w, hparams, spec, create_graph=create_graph)
        lr = self.lr if self.lr_key is None else self.step_size(hparams)
        if torch.is_grad_enabled() == create_graph:  # a no-graph segment runs in no_grad
            return self._update(state, w, grad, lr)
        with torch.set_grad_enabled(create_graph):
            return self._update(state, w, grad, lr)

    def _update(self, state: Leaves, w: Leaves, grad: Leaves, lr: Tensor | float) -> Leaves:
        mu = self.momentum
        if isinstance(lr, Tensor):  # a learned step size: a tensor in the graph
            if mu:
                v = tuple(mu * vi + gi for vi, gi in zip(state[len(w) :], grad))
                return tuple(wi - lr * vi for wi, vi in zip(w, v)) + v
            return tuple(wi - lr * gi for wi, gi in zip(w, grad))
        # a fixed step size: one fused kernel (and one backward node) per leaf, not two
        if not mu and len(w) == 1:
            return (torch.sub(w[0], grad[0], alpha=lr),)
        if mu:
            v = tuple(torch.add(gi, vi, alpha=mu) for vi, gi in zip(state[len(w) :], grad))
            return tuple(torch.sub(wi, vi, alpha=lr) for wi, vi in zip(w, v)) + v
        return tuple(torch.sub(wi, gi, alpha=lr) for wi, gi in zip(w, grad))

    def functional_step(
        self,
        problem: BilevelProblem[Any, Any],
        state: Leaves,
        hparams: Tree,
        spec: Spec,
        t: int | None = None,
    ) -> Leaves:
        """:meth:`step` written with ``torch.func.grad``, for ``jvp``/``vmap`` (forward mode)."""
        if t is not None:
            problem = problem.at_step(t)
        w = self.params(state)
        if problem.inner_grad is not None:
            grad, _ = flatten(problem.inner_grad(unflatten(spec, w), hparams), "inner_grad")
        else:
            grad = torch.func.grad(
                lambda ws: scalar_loss(problem.inner_loss(unflatten(spec, ws), hparams), "inner")
            )(w)
        return self._update(state, w, grad, self.step_size(hparams))


def inner_grad(
    problem: BilevelProblem[Any, Any], w: Leaves, hparams: Tree, spec: Spec, *, create_graph: bool
) -> Leaves:
    """``∇_w g(w, λ)``, from the problem's closed form or from autograd.

    With ``create_graph=False`` the result is detached: the graph autograd needs for this one
    gradient is freed at once, so a no-graph prefix holds no memory across steps.
    """
    if problem.inner_grad is not None:
        if torch.is_grad_enabled() == create_graph:
            return flatten(problem.inner_grad(unflatten(spec, w), hparams), "inner_grad")[0]
        with torch.set_grad_enabled(create_graph):
            grad, _ = flatten(problem.inner_grad(unflatten(spec, w), hparams), "inner_grad")
        return grad
    # autograd needs leaves that require grad; a w_t cut from the graph is a constant in λ,
    # so a fresh leaf for it changes no derivative with respect to λ.
    if len(w) == 1 and spec is None:
        # one tensor of parameters, the common case: no tuples to build and walk, and a
        # tensor, not a tuple, to autograd.grad (whose checks of a sequence cost more);
        # this runs T times per hypergradient (benchmarks.library.peers --instructions)
        x = w[0] if w[0].requires_grad else w[0].detach().requires_grad_(True)
        with torch.enable_grad():
            loss = scalar_loss(problem.inner_loss(x, hparams), "inner")
            (g,) = torch.autograd.grad(loss, x, create_graph=create_graph, allow_unused=True)
        return (torch.zeros_like(x) if g is None else g,)
    w = tuple(x if x.requires_grad else x.detach().requires_grad_(True) for x in w)
    with torch.enable_grad():
        loss = scalar_loss(problem.inner_loss(unflatten(spec, w), hparams), "inner")
        grads = torch.autograd.grad(loss, w, create_graph=create_graph, allow_unused=True)
    return zeros_for_none(grads, w)
