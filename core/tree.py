"""Tensor-or-dict structures ("trees") of parameters and hyperparameters.

`params` and `hparams` are either one tensor or a dict of named tensors. Estimators work on
flat tuples of leaves and hand the user's structure back at the boundary; these helpers do
the conversion and the few vector operations estimators need on such tuples.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from core.errors import ConfigurationError

Tree = Tensor | Mapping[str, Tensor]
Leaves = tuple[Tensor, ...]
# None for a bare tensor, else the dict's keys in order.
Spec = tuple[str, ...] | None

__all__ = [
    "Leaves",
    "Spec",
    "Tree",
    "as_tensor",
    "flatten",
    "tree_dot",
    "tree_norm",
    "unflatten",
    "zeros_for_none",
]


def flatten(tree: Tree, what: str = "hparams") -> tuple[Leaves, Spec]:
    """Split a tensor or a dict of tensors into its leaves and a spec to rebuild it.

    Raises:
        ConfigurationError: if ``tree`` is neither, or a leaf is not a floating tensor.
    """
    if isinstance(tree, Tensor):
        _check_leaf(tree, what)
        return (tree,), None
    if isinstance(tree, Mapping):
        if not tree:
            raise ConfigurationError(f"{what} must not be an empty dict")
        keys = tuple(tree)
        for k in keys:
            if not isinstance(k, str):
                raise ConfigurationError(f"{what} keys must be str, got {k!r}")
            _check_leaf(tree[k], f"{what}[{k!r}]")
        return tuple(tree[k] for k in keys), keys
    raise ConfigurationError(
        f"{what} must be a tensor or a dict of tensors, got {type(tree).__name__}"
    )


def unflatten(spec: Spec, leaves: Sequence[Tensor]) -> Tree:
    """Inverse of :func:`flatten`."""
    if spec is None:
        return leaves[0]
    return dict(zip(spec, leaves))


def as_tensor(tree: Tree, what: str = "hparams") -> Tensor:
    """``tree`` itself, for a problem whose ``params`` or ``hparams`` are one tensor.

    Results carry the user's structure typed as :data:`Tree`; this narrows it where the
    caller knows it is a tensor (``Toy``, ``Hypercleaning``, ...).

    Raises:
        ConfigurationError: ``tree`` is a dict.
    """
    if not isinstance(tree, Tensor):
        raise ConfigurationError(f"{what} must be a tensor, got {type(tree).__name__}")
    return tree


def _check_leaf(x: Any, what: str) -> None:
    if not isinstance(x, Tensor):
        raise ConfigurationError(f"{what} must be a tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ConfigurationError(f"{what} must be a floating-point tensor, got dtype {x.dtype}")


def tree_map(fn: Callable[..., Tensor], *trees: Leaves) -> Leaves:
    """Apply ``fn`` leaf by leaf over tuples of leaves of the same structure."""
    return tuple(fn(*xs) for xs in zip(*trees))


def tree_dot(a: Leaves, b: Leaves) -> Tensor:
    """Euclidean inner product of two leaf tuples, as a 0-d tensor."""
    return sum((torch.sum(x * y) for x, y in zip(a, b)), torch.zeros((), dtype=a[0].dtype))


def tree_norm(a: Leaves) -> float:
    """Euclidean norm of a leaf tuple seen as one vector."""
    return math.sqrt(sum(float(torch.sum(x * x)) for x in a))


def tree_numel(a: Leaves) -> int:
    """Number of scalars in a leaf tuple."""
    return sum(x.numel() for x in a)


def tree_nbytes(a: Leaves) -> int:
    """Bytes held by a leaf tuple's elements."""
    return sum(x.numel() * x.element_size() for x in a)


def to_vector(a: Leaves) -> Tensor:
    """Concatenate the leaves into one flat vector."""
    return torch.cat([x.reshape(-1) for x in a])


def from_vector(v: Tensor, like: Leaves) -> Leaves:
    """Split a flat vector into leaves shaped like ``like``."""
    out, i = [], 0
    for x in like:
        out.append(v[i : i + x.numel()].view_as(x).to(x.dtype))
        i += x.numel()
    return tuple(out)


def detached(a: Leaves, requires_grad: bool = False) -> Leaves:
    """Copies of the leaves cut from any graph; fresh autograd leaves if ``requires_grad``."""
    return tuple(x.detach().requires_grad_(requires_grad) for x in a)


def all_finite(a: Leaves) -> bool:
    """Whether every element of every leaf is finite."""
    return all(bool(torch.isfinite(x).all()) for x in a)


def zeros_for_none(grads: Sequence[Tensor | None], like: Leaves) -> Leaves:
    """``torch.autograd.grad(..., allow_unused=True)``'s ``None`` entries as zeros like ``like``."""
    return tuple(torch.zeros_like(x) if g is None else g for g, x in zip(grads, like))
