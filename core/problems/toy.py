"""The two-dimensional toy problem of Section 4.1 and its biased variant ``f~``."""

from __future__ import annotations

import torch
from torch import Tensor

from core.problem import BilevelProblem

__all__ = ["Toy"]


class Toy(BilevelProblem[Tensor, Tensor]):
    """The toy problem of Section 4.1, a quadratic ``g`` and a non-convex ``f`` on ``R^2``.

    ``λ, w ∈ R^2``, ``G = diag(1, 1/2)``, ``w_0 = (2, 2)``::

        g(w, λ) = ½ (w - λ)^T G (w - λ)
        f(w, λ) = ||w||² + 10 ||sin w||²                 (+ 5 ||λ - (1, 0)||² if biased)

    ``g`` is 1-smooth and ½-strongly convex; with gradient descent of step ``γ``,
    ``B_{t+1} = γG`` and ``B_0 = 0``, so ``M_B = γ`` in Prop. 3.1. ``f`` satisfies
    ``∇_λ f = 0`` (Theorem 3.4 applies); the biased ``f~`` breaks its assumption 3.

    Args:
        biased: use ``f~`` (Figures 2 right and 3).
        w0: the constant initial point.
    """

    alpha = 0.5  # strong convexity of g
    beta = 1.0  # smoothness of g
    target = (1.0, 0.0)  # the centre of the bias term of f~

    def __init__(self, biased: bool = False, w0: tuple[float, float] = (2.0, 2.0)):
        self.biased = biased
        self.w0 = w0

    def _G(self, like: Tensor) -> Tensor:
        return torch.tensor([1.0, 0.5], dtype=like.dtype, device=like.device)

    def init(self, hparams: Tensor) -> Tensor:
        """``w_0 = (2, 2)``, a constant: ``B_0 = 0``."""
        return torch.tensor(self.w0, dtype=hparams.dtype, device=hparams.device)

    def inner_loss(self, params: Tensor, hparams: Tensor) -> Tensor:
        """``g(w, λ) = ½ (w - λ)^T G (w - λ)``."""
        d = params - hparams
        return 0.5 * torch.sum(self._G(d) * d * d)

    def inner_grad(self, params: Tensor, hparams: Tensor) -> Tensor:
        """``∇_w g = G (w - λ)`` in closed form."""
        return self._G(params) * (params - hparams)

    def outer_loss(self, params: Tensor, hparams: Tensor) -> Tensor:
        """``f(w, λ) = ||w||² + 10 ||sin w||²``, plus ``5 ||λ - (1, 0)||²`` when biased."""
        f = torch.sum(params**2) + 10.0 * torch.sum(torch.sin(params) ** 2)
        if self.biased:
            f = f + 5.0 * torch.sum((hparams - hparams.new_tensor(self.target)) ** 2)
        return f

    def initial_hparams(self, dtype: torch.dtype = torch.float64) -> Tensor:
        """A starting ``λ`` in the basin of the origin, away from the optimum (Figure 4)."""
        return torch.tensor([1.2, 1.6], dtype=dtype)

    # -- closed forms, for tests and figures (gradient descent without momentum) ----------

    def closed_form(
        self, hparams: Tensor, steps: int, lr: float, K: int | None = None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]:
        """``(w_T, ∇_{ŵ*} f, ∇_λ f, d_λ f, h_{T-K})`` in closed form.

        ``w_T = C w_0 + (I - C) λ`` with ``C = (I - γG)^T``; ``d_λ f = (I - C) ∇_{ŵ*} f +
        ∇_λ f``; ``h_{T-K} = (I - (I - γG)^K) ∇_{ŵ*} f + ∇_λ f`` (Eq. 5 and 8 with constant
        ``A = I - γG``, ``B = γG``).
        """
        a = 1.0 - lr * self._G(hparams)
        C = a**steps
        w = C * self.init(hparams) + (1.0 - C) * hparams
        grad_w = 2.0 * w + 20.0 * torch.sin(w) * torch.cos(w)
        grad_lam = torch.zeros_like(hparams)
        if self.biased:
            grad_lam = 10.0 * (hparams - hparams.new_tensor(self.target))
        exact = (1.0 - C) * grad_w + grad_lam
        trunc = None if K is None else (1.0 - a**K) * grad_w + grad_lam
        return w, grad_w, grad_lam, exact, trunc
