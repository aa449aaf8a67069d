"""The counterexample of Theorem 3.5 (Appendix E): K-RMD with a constant bias."""

from __future__ import annotations

import torch
from torch import Tensor

from core.problem import BilevelProblem

__all__ = ["Counterexample"]


class Counterexample(BilevelProblem[Tensor, Tensor]):
    """Eq. (18) with ``φ(λ) = ½ (λ - λ_0)²``, a scalar problem that breaks assumption 3.

    ::

        g(w, λ) = ½ (w - λ)²,   f(w, λ) = ½ w² + ½ (λ - λ_0)²,   w_0 constant.

    With gradient descent of step ``γ`` and ``c = (1-γ)^T``, ``w_T = c w_0 + (1-c) λ`` and

        d_λ f   = (1 - c) w_T + (λ - λ_0)
        h_{T-K} = (1 - (1-γ)^K) w_T + (λ - λ_0)

    whose zeros differ: K-RMD converges to the zero of ``h_{T-K}``, not a stationary point.

    Args:
        lam0: the centre ``λ_0`` of the perturbation ``φ``.
        w0: the constant initial point.
    """

    def __init__(self, lam0: float = 2.0, w0: float = 1.0):
        self.lam0 = lam0
        self.w0 = w0

    def init(self, hparams: Tensor) -> Tensor:
        """``w_0``, the constant ``w0`` shaped like ``λ``."""
        return torch.full_like(hparams, self.w0)

    def inner_loss(self, params: Tensor, hparams: Tensor) -> Tensor:
        """``g(w, λ) = ½ (w - λ)²``."""
        return 0.5 * torch.sum((params - hparams) ** 2)

    def outer_loss(self, params: Tensor, hparams: Tensor) -> Tensor:
        """``f(w, λ) = ½ w² + ½ (λ - λ_0)²``."""
        return 0.5 * torch.sum(params**2) + 0.5 * torch.sum((hparams - self.lam0) ** 2)

    def initial_hparams(self, dtype: torch.dtype = torch.float64) -> Tensor:
        """``λ = 0``, the default start of an outer loop."""
        return torch.zeros(1, dtype=dtype)

    def fixed_point(self, steps: int, lr: float, K: int | None = None) -> float:
        """The zero of ``d_λ f`` (``K=None``) or of ``h_{T-K}``, in closed form."""
        c = (1.0 - lr) ** steps
        a = 1.0 - c if K is None else 1.0 - (1.0 - lr) ** K
        # a (c w0 + (1-c) λ) + λ - λ0 = 0
        return (self.lam0 - a * c * self.w0) / (a * (1.0 - c) + 1.0)

    def exact_grad(self, lam: float, steps: int, lr: float) -> float:
        """``d_λ f`` at a scalar ``λ`` in closed form."""
        c = (1.0 - lr) ** steps
        return (1.0 - c) * (c * self.w0 + (1.0 - c) * lam) + lam - self.lam0
