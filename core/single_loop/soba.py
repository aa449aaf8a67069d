"""SOBA: the stochastic single-loop bilevel method of Dagréou et al. (NeurIPS 2022)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from core.problem import BilevelProblem
from core.single_loop._oracle import (
    add,
    axpy,
    check_finite,
    check_schedule,
    draw,
    first_order,
    scaled,
    second_order,
)
from core.tree import Leaves, Spec, tree_norm
from core.validate import finite_positive, integer_at_least

__all__ = ["SOBA"]


@dataclass(frozen=True)
class SOBA:
    """Stochastic Bilevel Algorithm: ``w``, ``v`` and ``λ`` move together, one batch a step.

    Instead of unrolling the inner optimizer (Eq. 4) and differentiating it (Eqs. 5-8), SOBA
    tracks the inner solution ``w ≈ w*(λ)`` and the solution of the linear system of the
    implicit hypergradient (Eq. 11), ``v ≈ v*(λ) = -∇²_ww g⁻¹ ∇_w f``, each with one
    stochastic step per outer step. With inner batch ``i`` and outer batch ``j`` drawn at
    step ``k`` and every direction evaluated at ``(w_k, v_k, λ_k)``::

        D_w = ∇_w g_i(w_k, λ_k)
        D_v = ∇²_ww g_i(w_k, λ_k) v_k + ∇_w f_j(w_k, λ_k)
        D_λ = ∇²_λw g_i(w_k, λ_k) v_k + ∇_λ f_j(w_k, λ_k)
        w_{k+1} = w_k - ρ_k D_w,   v_{k+1} = v_k - ρ_k D_v,   λ_{k+1} = λ_k - γ_k D_λ

    At ``(w*, v*)`` the expected ``D_λ`` is the hypergradient of Eq. (11). The
    Hessian- and Jacobian-vector products are one double-backward pass of autograd
    (:func:`core.single_loop._oracle.second_order`). Per step the cost is a few passes over
    one batch: no horizon ``T``, no truncation ``K``.

    Args:
        inner_lr: ``ρ_0``, the step of ``w`` and ``v``.
        outer_lr: ``γ_0``, the step of ``λ``.
        schedule: ``"constant"`` or ``"inv_sqrt"`` (``ρ_k = ρ_0/√k``, ``γ_k = γ_0/√k``);
            constant steps converge to a neighbourhood of the solution whose size shrinks
            with the batch noise (exactly to it for a single batch).
        seed: seeds the batch draws (:func:`core.single_loop._oracle.draw`).

    Raises:
        ConfigurationError: a non-positive step, an unknown schedule, a negative seed.
    """

    inner_lr: float = 0.1
    outer_lr: float = 0.01
    schedule: str = "constant"
    seed: int = 0

    name: ClassVar[str] = "soba"

    def __post_init__(self) -> None:
        finite_positive(self.inner_lr, "inner_lr")
        finite_positive(self.outer_lr, "outer_lr")
        check_schedule(self.schedule)
        integer_at_least(self.seed, "seed", minimum=0)

    def start(
        self, problem: BilevelProblem[Any, Any], w: Leaves, lam: Leaves, specs: tuple[Spec, Spec]
    ) -> dict[str, Any]:
        """``(w_1, v_1) = (w_0, 0)``."""
        return {"w": w, "v": tuple(x.new_zeros(x.shape) for x in w)}

    def step(
        self,
        problem: BilevelProblem[Any, Any],
        lam: Leaves,
        state: dict[str, Any],
        k: int,
        specs: tuple[Spec, Spec],
    ) -> tuple[Leaves, dict[str, Any], dict[str, float]]:
        """Step ``k`` (1-based): the new ``λ``, the new state and the record's numbers."""
        w, v = state["w"], state["v"]
        inner = problem.on_batch("inner", draw(problem, "inner", self.seed, k))
        outer = problem.on_batch("outer", draw(problem, "outer", self.seed, k))
        d_w, hv, jv = second_order(inner, w, lam, v, specs)
        loss, f_w, f_lam = first_order(outer, "outer", w, lam, specs)
        d_v, d_lam = add(hv, f_w), add(jv, f_lam)
        rho = scaled(self.inner_lr, self.schedule, k)
        gamma = scaled(self.outer_lr, self.schedule, k)
        new = {"w": axpy(w, -rho, d_w), "v": axpy(v, -rho, d_v)}
        lam = axpy(lam, -gamma, d_lam)
        check_finite(k, w=new["w"], v=new["v"], hparams=lam)
        return lam, new, {"outer_loss": loss, "grad_norm": tree_norm(d_lam), "lr": gamma}
