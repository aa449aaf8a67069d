"""F2SA: the fully first-order stochastic bilevel method of Kwon et al. (ICML 2023)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from core.errors import ConfigurationError
from core.problem import BilevelProblem
from core.single_loop._oracle import (
    add,
    axpy,
    check_finite,
    check_schedule,
    draw,
    first_order,
    scaled,
)
from core.tree import Leaves, Spec, tree_norm
from core.validate import finite_positive, integer_at_least

__all__ = ["F2SA"]


@dataclass(frozen=True)
class F2SA:
    """Fully First-order Stochastic Approximation: gradients only, no Hessian products.

    F2SA replaces ``F(λ) = f(w*(λ), λ)`` by the penalty value function
    ``L*_σ(λ) = min_y [f(y, λ) + σ g(y, λ)] - σ min_z g(z, λ)``, whose gradient
    ``∇_λ f(y*_σ, λ) + σ (∇_λ g(y*_σ, λ) - ∇_λ g(z*, λ))`` is within ``O(1/σ)`` of the
    implicit hypergradient of Eq. (11) and needs first derivatives only. It tracks ``y``
    and ``z`` with one stochastic step each per outer step and lets the multiplier ``σ``
    grow. With inner batch ``i``, outer batch ``j`` and every direction at
    ``(y_k, z_k, λ_k)`` (the simultaneous form, as in SOBA)::

        σ_k     = min(σ_0 + δ (k-1), σ_max)
        z_{k+1} = z_k - α_k ∇_w g_i(z_k, λ_k)
        y_{k+1} = y_k - (α_k / σ_k) (∇_w f_j(y_k, λ_k) + σ_k ∇_w g_i(y_k, λ_k))
        λ_{k+1} = λ_k - γ_k (∇_λ f_j(y_k, λ_k) + σ_k (∇_λ g_i(y_k, λ_k) - ∇_λ g_i(z_k, λ_k)))

    ``y``'s step ``α/σ`` on ``f + σ g`` is the step ``α`` on ``f/σ + g``: both trackers
    contract at the rate of ``g`` whatever ``σ``. Three first-order oracle calls a step;
    the ``B_t``/``A_t`` products of Eqs. (5)-(8) never appear, which is the point on
    problems whose second-order products are too expensive. ``y`` is the inner iterate
    reported as ``w``.

    Args:
        inner_lr: ``α_0``.
        outer_lr: ``γ_0``.
        penalty: ``σ_0 >= 1``.
        penalty_growth: ``δ >= 0`` added to ``σ`` per step.
        penalty_max: ``σ_max >= σ_0``; the bias of the fixed point is ``O(1/σ_max)``.
        schedule: ``"constant"`` or ``"inv_sqrt"`` for ``α_k`` and ``γ_k``.
        seed: seeds the batch draws.

    Raises:
        ConfigurationError: an argument out of range.
    """

    inner_lr: float = 0.1
    outer_lr: float = 0.01
    penalty: float = 1.0
    penalty_growth: float = 0.1
    penalty_max: float = 1e4
    schedule: str = "constant"
    seed: int = 0

    name: ClassVar[str] = "f2sa"

    def __post_init__(self) -> None:
        finite_positive(self.inner_lr, "inner_lr")
        finite_positive(self.outer_lr, "outer_lr")
        finite_positive(self.penalty_max, "penalty_max")
        if not (isinstance(self.penalty, (int, float)) and 1.0 <= self.penalty <= self.penalty_max):
            raise ConfigurationError(
                f"penalty must be in [1, penalty_max={self.penalty_max}], got {self.penalty!r}"
            )
        if not (isinstance(self.penalty_growth, (int, float)) and self.penalty_growth >= 0):
            raise ConfigurationError(f"penalty_growth must be >= 0, got {self.penalty_growth!r}")
        check_schedule(self.schedule)
        integer_at_least(self.seed, "seed", minimum=0)

    def sigma(self, k: int) -> float:
        """``σ_k`` of step ``k`` (1-based)."""
        return min(self.penalty + self.penalty_growth * (k - 1), self.penalty_max)

    def start(
        self, problem: BilevelProblem[Any, Any], w: Leaves, lam: Leaves, specs: tuple[Spec, Spec]
    ) -> dict[str, Any]:
        """``y_1 = z_1 = w_0``."""
        return {"w": w, "z": w}

    def step(
        self,
        problem: BilevelProblem[Any, Any],
        lam: Leaves,
        state: dict[str, Any],
        k: int,
        specs: tuple[Spec, Spec],
    ) -> tuple[Leaves, dict[str, Any], dict[str, float]]:
        """Step ``k`` (1-based): the new ``λ``, the new state and the record's numbers."""
        y, z = state["w"], state["z"]
        inner = problem.on_batch("inner", draw(problem, "inner", self.seed, k))
        outer = problem.on_batch("outer", draw(problem, "outer", self.seed, k))
        _, gz_w, gz_lam = first_order(inner, "inner", z, lam, specs)
        _, gy_w, gy_lam = first_order(inner, "inner", y, lam, specs)
        loss, fy_w, fy_lam = first_order(outer, "outer", y, lam, specs)
        sigma = self.sigma(k)
        alpha = scaled(self.inner_lr, self.schedule, k)
        gamma = scaled(self.outer_lr, self.schedule, k)
        d_lam = axpy(fy_lam, sigma, axpy(gy_lam, -1.0, gz_lam))
        new = {
            "z": axpy(z, -alpha, gz_w),
            "w": axpy(y, -alpha / sigma, add(fy_w, tuple(sigma * g for g in gy_w))),
        }
        lam = axpy(lam, -gamma, d_lam)
        check_finite(k, w=new["w"], z=new["z"], hparams=lam)
        return lam, new, {"outer_loss": loss, "grad_norm": tree_norm(d_lam), "lr": gamma}
