"""A finite-sum strongly convex quadratic bilevel pair whose solution is known in closed form."""

from __future__ import annotations

import torch
from torch import Tensor

from core.errors import ConfigurationError
from core.problem import BilevelProblem
from core.validate import integer_at_least

__all__ = ["QuadraticPair"]


class QuadraticPair(BilevelProblem[Tensor, Tensor]):
    """Sums of quadratics at both levels, for stochastic methods with an exact answer.

    With ``n`` inner components ``(H_i, Φ_i, b_i)`` (each ``H_i`` symmetric with spectrum in
    ``[mu, L]``) and ``m`` outer targets ``t_j``::

        g(w, λ) = (1/n) Σ_i ½ wᵀ H_i w - wᵀ (Φ_i λ + b_i)
        f(w, λ) = (1/m) Σ_j ½ ||w - t_j||² + ½ rho ||λ||²

    so ``w*(λ) = H̄⁻¹ (Φ̄ λ + b̄)`` (bars are means) and ``F(λ) = f(w*(λ), λ)`` is a strongly
    convex quadratic: with ``A = H̄⁻¹ Φ̄``, ``λ* = (AᵀA + rho I)⁻¹ Aᵀ (t̄ - H̄⁻¹ b̄)``
    (:meth:`solution`). Batch ``i`` of the inner level is component ``i``, batch ``j`` of the
    outer level is target ``j``: the mean over batches is exactly the full objective.

    Args:
        dim: ``M`` (size of ``w``).
        n_hparams: ``N`` (size of ``λ``).
        n_inner: ``n``, inner components (batches).
        n_outer: ``m``, outer components (batches).
        mu: smallest eigenvalue of every ``H_i``.
        L: largest eigenvalue of every ``H_i``.
        rho: the ridge on ``λ`` in ``f``; > 0 keeps ``F`` strongly convex whatever ``N``.
        seed: the generator's.
        dtype: of every tensor.

    Raises:
        ConfigurationError: sizes < 1, ``not 0 < mu <= L`` or ``rho < 0``.
    """

    def __init__(
        self,
        dim: int = 6,
        n_hparams: int = 3,
        *,
        n_inner: int = 8,
        n_outer: int = 4,
        mu: float = 0.5,
        L: float = 2.0,
        rho: float = 0.1,
        seed: int = 0,
        dtype: torch.dtype = torch.float64,
    ):
        for name, value in (("dim", dim), ("n_hparams", n_hparams)):
            integer_at_least(value, name)
        integer_at_least(n_inner, "n_inner")
        integer_at_least(n_outer, "n_outer")
        if not 0 < mu <= L:
            raise ConfigurationError(f"need 0 < mu <= L, got mu={mu}, L={L}")
        if rho < 0:
            raise ConfigurationError(f"rho must be >= 0, got {rho}")
        gen = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(n_inner, dim, dim, generator=gen, dtype=dtype))
        spectrum = mu + (L - mu) * torch.rand(n_inner, dim, generator=gen, dtype=dtype)
        self.H = q @ torch.diag_embed(spectrum) @ q.transpose(1, 2)
        # scaled so that ||Φ_i|| stays O(1) whatever dim: F's curvature does not grow with M
        phi = torch.randn(n_inner, dim, n_hparams, generator=gen, dtype=dtype)
        self.Phi = phi / dim**0.5
        self.b = torch.randn(n_inner, dim, generator=gen, dtype=dtype)
        self.targets = torch.randn(n_outer, dim, generator=gen, dtype=dtype)
        self.rho = rho
        self.n_hparams = n_hparams
        self._index: dict[str, int | None] = {"inner": None, "outer": None}

    # -- the problem ---------------------------------------------------------------------

    def init(self, hparams: Tensor) -> Tensor:
        """``w_0 = 0``."""
        return self.b.new_zeros(self.b.shape[1])

    def initial_hparams(self) -> Tensor:
        """``λ = 0``."""
        return self.b.new_zeros(self.n_hparams)

    def inner_loss(self, params: Tensor, hparams: Tensor) -> Tensor:
        """``g`` (the whole mean, or one component on a batch view)."""
        H, Phi, b = self._inner_parts()
        quad = 0.5 * torch.einsum("i,nij,j->n", params, H, params)
        lin = torch.einsum("i,ni->n", params, torch.einsum("nij,j->ni", Phi, hparams) + b)
        return (quad - lin).mean()

    def outer_loss(self, params: Tensor, hparams: Tensor) -> Tensor:
        """``f`` (the whole mean, or one target on a batch view)."""
        t = self.targets
        j = self._index["outer"]
        if j is not None:
            t = t[j : j + 1]
        sq = 0.5 * ((params[None, :] - t) ** 2).sum(dim=1).mean()
        return sq + 0.5 * self.rho * (hparams**2).sum()

    def n_batches(self, level: str) -> int:
        """``n`` inner components, ``m`` outer targets."""
        return int(self.H.shape[0] if level == "inner" else self.targets.shape[0])

    def on_batch(self, level: str, index: int) -> QuadraticPair:
        """The view on component ``index`` of ``level``."""
        view = object.__new__(QuadraticPair)
        view.__dict__.update(self.__dict__)
        view._index = {**self._index, level: index}
        return view

    def _inner_parts(self) -> tuple[Tensor, Tensor, Tensor]:
        i = self._index["inner"]
        if i is None:
            return self.H, self.Phi, self.b
        return self.H[i : i + 1], self.Phi[i : i + 1], self.b[i : i + 1]

    # -- the known answer ----------------------------------------------------------------

    def solution(self) -> tuple[Tensor, Tensor]:
        """``(λ*, w*(λ*))``: the minimiser of ``F`` and the inner solution there."""
        H, Phi, b = self.H.mean(0), self.Phi.mean(0), self.b.mean(0)
        A = torch.linalg.solve(H, Phi)
        c = self.targets.mean(0) - torch.linalg.solve(H, b)
        eye = torch.eye(self.n_hparams, dtype=H.dtype)
        lam = torch.linalg.solve(A.T @ A + self.rho * eye, A.T @ c)
        return lam, torch.linalg.solve(H, Phi @ lam + b)

    def metrics(self, params: Tensor, hparams: Tensor) -> dict[str, float]:
        """``dist``: ``||λ - λ*||``, the figure of merit of the benchmark."""
        lam, _ = self.solution()
        return {"dist": float(torch.linalg.vector_norm(hparams.detach() - lam))}
