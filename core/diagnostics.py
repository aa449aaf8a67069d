"""Diagnostics: how an estimate compares with the exact hypergradient, and why.

Exact-versus-approximate comparisons (:func:`compare`), the bias bound of Prop. 3.1
(:func:`prop31_bound`), the norms of the Jacobians ``A_t`` it assumes contract
(:func:`jacobian_norms`), and a deterministic meter of autograd's saved memory.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from core.errors import ConfigurationError
from core.tree import (
    Leaves,
    Spec,
    Tree,
    detached,
    flatten,
    to_vector,
    tree_dot,
    tree_norm,
    unflatten,
    zeros_for_none,
)
from core.validate import integer_at_least

if TYPE_CHECKING:
    from core.dynamics import GradientDescent
    from core.problem import BilevelProblem

__all__ = [
    "SavedTensorMeter",
    "compare",
    "jacobian_norms",
    "jacobian_spectral_norm",
    "prop31_bound",
]


def compare(approx: Tree, exact: Tree) -> dict[str, float]:
    """How well an estimate ``h`` (e.g. ``h_{T-K}``) matches the exact ``d = d_λ f``.

    Returns:
        ``exact_norm`` ``||d||``, ``approx_norm`` ``||h||``, ``cosine`` between them,
        ``rel_error`` ``||h - d|| / ||d||`` and ``descent_ratio`` ``h^T d / ||d||²``, the
        quantity Lemma 3.2 keeps away from zero (Figure 2). Ratios are NaN when ``d = 0``.
    """
    h = to_vector(flatten(approx, "approx")[0]).detach().double()
    d = to_vector(flatten(exact, "exact")[0]).detach().double()
    dn, hn = float(d.norm()), float(h.norm())
    dot = float(h @ d)
    nan = float("nan")
    return {
        "exact_norm": dn,
        "approx_norm": hn,
        "cosine": dot / (dn * hn) if dn > 0 and hn > 0 else nan,
        "rel_error": float((h - d).norm()) / dn if dn > 0 else nan,
        "descent_ratio": dot / dn**2 if dn > 0 else nan,
    }


def prop31_bound(K: int, gamma: float, alpha: float, grad_w_norm: float, M_B: float) -> float:
    """The bias bound of Prop. 3.1 for a globally ``alpha``-strongly convex ``g`` (Eq. 10).

    ``||h_{T-K} - d_λ f|| <= (1 - γα)^K / (γα) · ||∇_{ŵ*} f|| · M_B``, valid for ``γ <= 1/β``.

    Args:
        K: truncation depth.
        gamma: inner step size γ.
        alpha: strong convexity of ``g``.
        grad_w_norm: ``||∇_{ŵ*} f||`` (``info["grad_w_norm"]`` of a result).
        M_B: ``max_t ||B_t||`` over ``t <= T-K``.

    Returns:
        The bound on ``||h_{T-K} - d_λ f||``.
    """
    return (1.0 - gamma * alpha) ** K / (gamma * alpha) * grad_w_norm * M_B


def jacobian_norms(
    problem: BilevelProblem[Any, Any],
    hparams: Tree,
    dynamics: GradientDescent,
    steps: Iterable[int] | None = None,
    *,
    iters: int = 20,
    seed: int = 0,
) -> dict[int, float]:
    """``||A_t||_2`` along the unroll: how much step ``t`` stretches Eq. (6)'s ``α``.

    ``A_t = ∇_w Ξ_t(w_{t-1}, λ)`` (``I - γ ∇²_w g`` without momentum), so ``α_{t-1} = A_t α_t``
    and the term ``B_t A_{t+1} ⋯ A_T ∇_{ŵ*} f`` of Eq. (5) shrinks with distance from ``T``
    only where ``||A_t|| < 1``. Prop. 3.1 assumes ``||A_t|| <= 1 - γα`` near the end of the
    unroll (``γ <= 1/β`` and local ``α``-strong convexity); a norm above 1 is a step beyond
    gradient descent's stability edge (``γ λ_max(∇²_w g) > 2``) or along negative curvature,
    where the early terms that K-RMD drops are amplified instead of damped.

    Each norm is ``sqrt`` of the Rayleigh quotient of ``A_t^T A_t`` after ``iters`` power
    iterations (one Jacobian-vector and one vector-Jacobian product each), from a seeded
    random start: a lower bound on ``||A_t||_2`` that tightens with ``iters``.

    Args:
        problem: the bilevel problem, as for :func:`core.hypergradient`.
        hparams: ``λ``, held constant (only ``∂/∂w`` is wanted).
        dynamics: the inner optimizer whose transitions ``Ξ_t`` are measured.
        steps: which ``t`` in ``1..T`` (default: all of them).
        iters: power iterations per step (>= 1).
        seed: of the random starting vectors.

    Returns:
        ``{t: ||A_t||_2}`` in increasing ``t``.

    Raises:
        ConfigurationError: if a step is outside ``1..T`` or ``iters < 1``.
    """
    T = dynamics.steps
    wanted = sorted(set(range(1, T + 1) if steps is None else steps))
    if not wanted or wanted[0] < 1 or wanted[-1] > T:
        raise ConfigurationError(f"steps must lie in 1..T={T}, got {wanted}")
    integer_at_least(iters, "iters")
    leaves, hp_spec = flatten(hparams)
    hp = unflatten(hp_spec, detached(leaves))  # constants: only ∂/∂w is wanted
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        state, spec = dynamics.init_state(problem, hp)
    state = detached(state)
    out: dict[int, float] = {}
    for t in range(1, wanted[-1] + 1):
        if t in wanted:
            out[t] = _transition_norm(problem.at_step(t - 1), hp, dynamics, state, spec, iters, gen)
        state = detached(dynamics.step(problem, state, hp, spec, create_graph=False, t=t - 1))
    return out


def _transition_norm(
    problem: BilevelProblem[Any, Any],
    hparams: Tree,
    dynamics: GradientDescent,
    state: Leaves,
    spec: Spec,
    iters: int,
    gen: torch.Generator,
) -> float:
    """``||A_t||_2`` at ``state`` by ``iters`` power iterations on ``A_t^T A_t``."""
    s = detached(state, requires_grad=True)
    nxt = dynamics.step(problem, s, hparams, spec, create_graph=True)
    return jacobian_spectral_norm(nxt, s, iters, gen)


def jacobian_spectral_norm(
    outputs: Leaves, inputs: Leaves, iters: int, gen: torch.Generator
) -> float:
    """``||∂outputs/∂inputs||_2`` by ``iters`` power iterations on ``JᵀJ``.

    Used for Prop. 3.1's ``||A_t||`` (inputs: the state) and ``||B_t||`` (inputs: λ).

    Args:
        outputs: tensors computed from ``inputs`` with ``create_graph=True``.
        inputs: leaves that require grad.
        iters: power iterations; each costs two vector-Jacobian products.
        gen: the generator of the random start vector.

    Returns:
        The estimate of the largest singular value (0 if the Jacobian vanishes).
    """
    # J v by the double-vjp trick: u -> (J^T u) is linear in u, and its vjp with v is J v
    u = tuple(torch.zeros_like(x, requires_grad=True) for x in outputs)
    jt_u = zeros_for_none(
        torch.autograd.grad(outputs, inputs, u, create_graph=True, allow_unused=True), inputs
    )
    v = tuple(torch.randn(x.shape, generator=gen, dtype=x.dtype).to(x.device) for x in inputs)
    sq = 0.0
    for _ in range(iters):
        n = tree_norm(v)
        if n == 0 or not math.isfinite(n):
            break
        v = tuple(x / n for x in v)
        jv = zeros_for_none(
            torch.autograd.grad(jt_u, u, v, retain_graph=True, allow_unused=True), outputs
        )
        jtjv = zeros_for_none(
            torch.autograd.grad(outputs, inputs, jv, retain_graph=True, allow_unused=True), inputs
        )
        sq = float(tree_dot(v, jtjv))  # Rayleigh quotient of J^T J at the unit v
        v = tuple(x.detach() for x in jtjv)
    return math.sqrt(max(sq, 0.0))


class SavedTensorMeter:
    """Count the bytes autograd holds for backward, deterministically, while it is active.

    Every tensor autograd saves passes through ``torch.autograd.graph.saved_tensors_hooks``;
    the meter adds its storage's size when first saved and subtracts it when the last graph
    node holding it is freed, so storages shared by several nodes count once. ``peak`` is the
    largest total seen at any one moment. Estimators also report ``info["stored_bytes"]``
    for states they keep outside autograd (checkpoints, iterates); add it for the total.

    Example:
        >>> import torch
        >>> with SavedTensorMeter() as meter:
        ...     x = torch.ones(1000, requires_grad=True)
        ...     y = (x * x).sum()
        >>> meter.peak >= 4000
        True
    """

    def __init__(self) -> None:
        self.current = 0
        self.peak = 0
        self._live: dict[Any, list[int]] = {}
        self._ctx: Any = None

    def __enter__(self) -> SavedTensorMeter:
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._ctx.__exit__(*exc)

    def _pack(self, tensor: Tensor) -> _Saved:
        storage = tensor.untyped_storage()
        key = (tensor.device, storage.data_ptr())
        if key in self._live:
            self._live[key][0] += 1
        else:
            self._live[key] = [1, storage.nbytes()]
            self.current += storage.nbytes()
            self.peak = max(self.peak, self.current)
        saved = _Saved(tensor)
        weakref.finalize(saved, self._release, key)
        return saved

    @staticmethod
    def _unpack(saved: _Saved) -> Tensor:
        return saved.tensor

    def _release(self, key: Any) -> None:
        entry = self._live[key]
        entry[0] -= 1
        if entry[0] == 0:
            self.current -= entry[1]
            del self._live[key]


class _Saved:
    """A saved tensor's box: the meter learns the graph freed it when the box is collected."""

    __slots__ = ("__weakref__", "tensor")

    def __init__(self, tensor: Tensor):
        self.tensor = tensor
