"""A random strongly convex quadratic bilevel problem with closed-form hypergradients."""

from __future__ import annotations

import torch
from torch import Tensor

from core.dynamics import GradientDescent
from core.errors import ConfigurationError
from core.problem import BilevelProblem
from core.tree import Tree, as_tensor

__all__ = ["Quadratic"]


class Quadratic(BilevelProblem[Tree, Tree]):
    """A strongly convex quadratic inner problem with a quadratic outer loss.

    ``λ ∈ R^N``, ``w ∈ R^M`` and, with ``H`` symmetric with spectrum in ``[mu, L]``::

        g(w, λ) = ½ w^T H w - w^T (Φ λ + b)
        f(w, λ) = ½ ||w - w_target||² + ½ rho ||λ||²
        w_0     = w_init + P λ                   (P = 0 unless init_depends_on_hparams)

    Every transition is affine, so ``w_T`` and ``d_λ f`` have closed forms
    (:meth:`exact_hypergradient`), as does the implicit hypergradient at ``w* = H^{-1}(Φλ+b)``
    (:meth:`implicit_hypergradient`). ``rho > 0`` makes ``∇_λ f ≠ 0``; ``init_depends_on_hparams``
    makes ``B_0 ≠ 0``; ``structured`` splits ``w`` and ``λ`` into dicts of two named tensors.

    Args:
        dim: ``M``.
        n_hparams: ``N``.
        mu: the smallest eigenvalue of ``H`` (strong convexity of ``g``).
        L: the largest eigenvalue of ``H`` (smoothness of ``g``).
        seed: the generator's.
        rho: weight of the direct term.
        init_depends_on_hparams: whether ``B_0 ≠ 0``.
        structured: use dicts ``{"u", "v"}`` for ``w`` and ``{"a", "b"}`` for ``λ``.
        dtype: of every tensor.
        device: where the tensors live (they are drawn on the CPU first, so the problem is
            the same on every device).
    """

    def __init__(
        self,
        dim: int = 8,
        n_hparams: int = 3,
        *,
        mu: float = 0.2,
        L: float = 1.0,
        seed: int = 0,
        rho: float = 0.0,
        init_depends_on_hparams: bool = False,
        structured: bool = False,
        dtype: torch.dtype = torch.float64,
        device: str | torch.device | None = None,
    ):
        if not 0 < mu <= L:
            raise ConfigurationError(f"need 0 < mu <= L, got mu={mu}, L={L}")
        if structured and (dim < 2 or n_hparams < 2):
            raise ConfigurationError(
                f"structured needs dim, n_hparams >= 2, got {dim}, {n_hparams}"
            )
        gen = torch.Generator().manual_seed(seed)

        def randn(*shape: int) -> Tensor:
            return torch.randn(*shape, generator=gen, dtype=dtype)

        Q, _ = torch.linalg.qr(randn(dim, dim))
        self.eigs = torch.linspace(mu, L, dim, dtype=dtype)
        self.Q = Q
        self.H = Q @ torch.diag(self.eigs) @ Q.T
        self.Phi = randn(dim, n_hparams)
        self.b = randn(dim)
        self.w_target = randn(dim)
        self.w_init = randn(dim)
        self.P = (
            randn(dim, n_hparams)
            if init_depends_on_hparams
            else torch.zeros(dim, n_hparams, dtype=dtype)
        )
        if device is not None:  # drawn on the CPU generator, so every device sees one problem
            for name in ("eigs", "Q", "H", "Phi", "b", "w_target", "w_init", "P"):
                setattr(self, name, getattr(self, name).to(device))
        self.rho = rho
        self.structured = structured
        self.dim, self.n_hparams, self.dtype = dim, n_hparams, dtype

    # -- tree <-> vector, for the structured variant -------------------------------------

    def _lam(self, hparams: Tree) -> Tensor:
        return self._vector(hparams, ("a", "b"), "hparams")

    def _w(self, params: Tree) -> Tensor:
        return self._vector(params, ("u", "v"), "params")

    def _vector(self, tree: Tree, keys: tuple[str, str], what: str) -> Tensor:
        """``tree`` itself, or with ``structured`` its two named parts as one vector."""
        if not self.structured:
            return as_tensor(tree, what)
        if isinstance(tree, Tensor):
            raise ConfigurationError(f"structured {what} must be a dict with keys {keys}")
        return torch.cat([tree[keys[0]], tree[keys[1]]])

    def _as_params(self, w: Tensor) -> Tree:
        return {"u": w[:2], "v": w[2:]} if self.structured else w

    def as_hparams(self, lam: Tensor) -> Tree:
        """``λ`` as a vector, in this problem's hyperparameter structure."""
        return {"a": lam[:1], "b": lam[1:]} if self.structured else lam

    def initial_hparams(self) -> Tree:
        """``λ = 0`` in the problem's hyperparameter structure."""
        return self.as_hparams(torch.zeros(self.n_hparams, dtype=self.dtype, device=self.H.device))

    # -- the problem ---------------------------------------------------------------------

    def init(self, hparams: Tree) -> Tree:
        """``w_0 = w_init + P λ``."""
        return self._as_params(self.w_init + self.P @ self._lam(hparams))

    def inner_loss(self, params: Tree, hparams: Tree) -> Tensor:
        """``g(w, λ) = ½ w^T H w - w^T (Φ λ + b)``."""
        w = self._w(params)
        # torch types `float * Tensor` (Tensor.__rmul__) as Any: the annotation restores it
        loss: Tensor = 0.5 * w @ (self.H @ w) - w @ (self.Phi @ self._lam(hparams) + self.b)
        return loss

    def outer_loss(self, params: Tree, hparams: Tree) -> Tensor:
        """``f(w, λ) = ½ ||w - w_target||² + ½ rho ||λ||²``."""
        lam = self._lam(hparams)
        return 0.5 * torch.sum((self._w(params) - self.w_target) ** 2) + 0.5 * self.rho * lam @ lam

    # -- closed forms --------------------------------------------------------------------

    def exact_hypergradient(self, hparams: Tree, dynamics: GradientDescent) -> Tensor:
        """``d_λ f`` (Eq. 5) in closed form, as a vector of length ``N``.

        Without momentum, with ``a_i = 1 - γ e_i`` over the eigenvalues ``e_i`` of ``H``:
        ``w_T = Q diag(a^T) Q^T w_0 + Q diag((1 - a^T)/e) Q^T (Φλ + b)``, linear in ``λ``.
        With momentum, the affine map of the state ``(w, v)`` is raised to the ``T``-th power.
        """
        if dynamics.lr_key is not None:
            raise ConfigurationError("the closed form needs a fixed step size (lr_key=None)")
        lam = self._lam(hparams).detach().to(self.H)
        T, lr, mu = dynamics.steps, dynamics.lr, dynamics.momentum
        M = self.dim
        I = torch.eye(M, dtype=self.dtype, device=self.H.device)
        if mu == 0.0:
            a = 1.0 - lr * self.eigs
            C = self.Q @ torch.diag(a**T) @ self.Q.T
            S = self.Q @ torch.diag((1.0 - a**T) / self.eigs) @ self.Q.T
            w0 = self.w_init + self.P @ lam
            w_T = C @ w0 + S @ (self.Phi @ lam + self.b)
            J = C @ self.P + S @ self.Phi  # d w_T / d λ, M x N
        else:
            # s = (w, v): v' = mu v + H w - (Φλ + b), w' = w - lr v'
            Z = torch.zeros(M, M, dtype=self.dtype, device=self.H.device)
            Amat = torch.cat(
                [
                    torch.cat([I - lr * self.H, -lr * mu * I], 1),
                    torch.cat([self.H, mu * I], 1),
                ]
            )
            Bmat = torch.cat([lr * self.Phi, -self.Phi])  # ∂s'/∂λ
            cvec = torch.cat([lr * self.b, -self.b])
            s0 = torch.cat(
                [self.w_init + self.P @ lam, torch.zeros(M, dtype=self.dtype, device=self.H.device)]
            )
            J0 = torch.cat([self.P, torch.zeros_like(self.P)])
            del Z
            An = torch.linalg.matrix_power(Amat, T)
            # Σ_{k<T} A^k via the block trick [[A, I], [0, I]]^T = [[A^T, Σ A^k], [0, I]].
            E = torch.eye(2 * M, dtype=self.dtype, device=self.H.device)
            big = torch.cat([torch.cat([Amat, E], 1), torch.cat([torch.zeros_like(E), E], 1)])
            Ssum = torch.linalg.matrix_power(big, T)[: 2 * M, 2 * M :]
            s_T = An @ s0 + Ssum @ (Bmat @ lam + cvec)
            w_T = s_T[:M]
            J = (An @ J0 + Ssum @ Bmat)[:M]
        grad: Tensor = J.T @ (w_T - self.w_target) + self.rho * lam
        return grad

    def implicit_hypergradient(self, hparams: Tree) -> Tensor:
        """Eq. (11) at the exact minimiser ``w* = H^{-1}(Φλ + b)``: the ``T → ∞`` limit."""
        lam = self._lam(hparams).detach().to(self.H)
        w_star = torch.linalg.solve(self.H, self.Phi @ lam + self.b)
        grad: Tensor = (
            self.Phi.T @ torch.linalg.solve(self.H, w_star - self.w_target) + self.rho * lam
        )
        return grad
