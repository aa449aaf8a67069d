"""Implicit differentiation at the last inner iterate, Eq. (11), with CG or Neumann."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from core.dynamics import GradientDescent, inner_grad
from core.errors import ConfigurationError, NonConvergenceError
from core.estimators.base import HypergradientResult, finish, outer_terms, prepare
from core.problem import BilevelProblem
from core.tree import Leaves, Tree, detached, tree_dot, tree_map, tree_norm
from core.validate import finite_positive, integer_at_least

__all__ = ["Implicit"]

_SOLVERS = ("cg", "neumann")


@dataclass(frozen=True)
class Implicit:
    """``d_λ f ≈ ∇_λ f - ∇_{λ,w} g (∇_{w,w} g)^{-1} ∇_{ŵ*} f`` at ``ŵ* = w_T`` (Eq. 11).

    Runs the ``T`` inner steps without a graph, then solves ``H q = ∇_{ŵ*} f`` with
    ``H = ∇_{w,w} g(w_T, λ)`` by Hessian-vector products:

    * ``"cg"``: conjugate gradients, bias ``O((1 - 1/sqrt(κ))^k)`` (Section 3.3);
    * ``"neumann"``: ``q = α Σ_{k<iters} (I - αH)^k ∇_{ŵ*} f`` with ``α`` the inner step size,
      the series of Prop. 3.6, so ``iters = K`` reproduces K-RMD at a converged ``w_T``.

    It is exact only at a stationary ``w_T`` of ``g`` and ignores how ``λ`` steers the
    optimizer (``B_0``, a learned step size): it approaches full RMD as ``T`` grows.
    ``info`` reports ``residual`` (``||Hq - ∇f|| / ||∇f||``), ``iters`` run and ``converged``.

    Args:
        solver: ``"cg"`` or ``"neumann"``.
        iters: maximum CG iterations, or the number of Neumann terms; ``>= 1``.
        tol: relative residual at which CG stops and either solver counts as converged.
        alpha: Neumann step; ``None`` for the inner step size ``γ``.
        strict: raise :class:`NonConvergenceError` instead of reporting ``converged=False``.

    Raises:
        ConfigurationError: an argument out of range.
        NonConvergenceError: with ``strict=True``, when the residual stays above ``tol``.
    """

    solver: str = "cg"
    iters: int = 100
    tol: float = 1e-10
    alpha: float | None = None
    strict: bool = False

    name: ClassVar[str] = "implicit"
    exact: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if self.solver not in _SOLVERS:
            raise ConfigurationError(f"solver must be one of {_SOLVERS}, got {self.solver!r}")
        integer_at_least(self.iters, "iters")
        if not (isinstance(self.tol, (int, float)) and self.tol > 0):
            raise ConfigurationError(f"tol must be a number > 0, got {self.tol!r}")
        finite_positive(self.alpha, "alpha", optional=True)

    def __call__(
        self, problem: BilevelProblem[Any, Any], hparams: Tree, dynamics: GradientDescent
    ) -> HypergradientResult:
        """The implicit hypergradient (Eq. 11) at ``w_T`` after ``T`` steps without a graph."""
        setup = prepare(problem, hparams, dynamics)
        lam_const = setup.tree(setup.hp_const)
        spec = setup.w_spec
        with torch.no_grad():
            state, _ = dynamics.init_state(problem, lam_const)
            for t in range(dynamics.steps):
                state = dynamics.step(problem, state, lam_const, spec, create_graph=False, t=t)
        w_T = dynamics.params(state)
        loss, grad_w, grad_lam = outer_terms(problem, setup, w_T)

        w = detached(w_T, requires_grad=True)
        with torch.enable_grad():
            gw = inner_grad(problem, w, setup.tree(setup.hp), spec, create_graph=True)

        def hvp(v: Leaves) -> Leaves:
            out = torch.autograd.grad(gw, w, v, retain_graph=True, allow_unused=True)
            return tuple(torch.zeros_like(x) if o is None else o for x, o in zip(w, out))

        b_norm = tree_norm(grad_w)
        if b_norm == 0.0:
            q, residual, iters = tuple(torch.zeros_like(x) for x in w), 0.0, 0
        elif self.solver == "cg":
            q, residual, iters = _cg(hvp, grad_w, b_norm, self.iters, self.tol)
        else:
            alpha = self.alpha or float(dynamics.step_size(lam_const))
            q, residual, iters = _neumann(hvp, grad_w, b_norm, self.iters, alpha)
        converged = residual <= self.tol
        if self.strict and not converged:
            raise NonConvergenceError(
                f"implicit {self.solver} solve stopped at relative residual {residual:.3e} "
                f"> tol={self.tol:.1e} after {iters} iterations",
                residual=residual,
                iters=iters,
            )
        # d_λ f = ∇_λ f - ∇_λ (∇_w g · q), the mixed term of Eq. (11) as one VJP.
        mixed = torch.autograd.grad(gw, setup.hp, q, allow_unused=True)
        grad = tuple(g if m is None else g - m for g, m in zip(grad_lam, mixed))
        info = {
            "method": self.name,
            "T": dynamics.steps,
            "solver": self.solver,
            "residual": residual,
            "iters": iters,
            "converged": converged,
            "grad_w_norm": b_norm,
            "stored_bytes": 0,
        }
        return finish(setup, grad, loss, w_T, info)


def _cg(
    hvp: Callable[[Leaves], Leaves], b: Leaves, b_norm: float, max_iter: int, tol: float
) -> tuple[Leaves, float, int]:
    """Conjugate gradients for ``H x = b`` from ``x = 0``; returns x, relative residual, iters."""
    x = tuple(torch.zeros_like(v) for v in b)
    r, p = b, b
    rr = tree_dot(r, r)
    residual, k = 1.0, 0
    for k in range(1, max_iter + 1):  # noqa: B007 - k is reported
        Hp = hvp(p)
        pHp = tree_dot(p, Hp)
        if pHp <= 0:  # H is not positive definite along p: CG's assumption fails.
            break
        a = rr / pHp
        x = tuple(xi + a * pi for xi, pi in zip(x, p))
        r = tuple(ri - a * hi for ri, hi in zip(r, Hp))
        rr_new = tree_dot(r, r)
        residual = math.sqrt(float(rr_new)) / b_norm
        if residual <= tol:
            break
        beta = rr_new / rr
        p = tuple(ri + beta * pi for ri, pi in zip(r, p))
        rr = rr_new
    return x, residual, k


def _neumann(
    hvp: Callable[[Leaves], Leaves], b: Leaves, b_norm: float, terms: int, alpha: float
) -> tuple[Leaves, float, int]:
    """``q = α Σ_{k<terms} (I - αH)^k b`` (Prop. 3.6) and its relative residual ``||Hq - b||``."""
    v, acc = b, b
    for _ in range(terms - 1):
        v = tree_map(lambda vi, hi: vi - alpha * hi, v, hvp(v))
        acc = tree_map(lambda ai, vi: ai + vi, acc, v)
    q = tuple(alpha * a for a in acc)
    res = tree_map(lambda hi, bi: hi - bi, hvp(q), b)
    return q, tree_norm(res) / b_norm, terms
