"""Exact-versus-approximate comparisons, the bound of Prop. 3.1, and a memory meter."""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch import Tensor

from core.tree import Tree, flatten, to_vector

__all__ = ["SavedTensorMeter", "compare", "prop31_bound"]


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
        K: truncation depth.  gamma: inner step size γ.  alpha: strong convexity of ``g``.
        grad_w_norm: ``||∇_{ŵ*} f||`` (``info["grad_w_norm"]`` of a result).
        M_B: ``max_t ||B_t||`` over ``t <= T-K``.
    """
    return (1.0 - gamma * alpha) ** K / (gamma * alpha) * grad_w_norm * M_B


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
