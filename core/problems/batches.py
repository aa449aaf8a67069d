"""Deterministic per-step minibatches: step ``t``'s rows are a pure function of ``(seed, t)``.

The inner optimizer of Eq. (4) sees at step ``t`` the rows :func:`minibatch` returns; the
estimators replay steps (K-RMD's prefix, checkpointed segments) and a resumed job replays a
whole hyper-iteration, so the rows must not depend on anything else (no global RNG).
Steps walk through shuffled epochs: epoch ``e`` is a permutation drawn from ``(seed, e)``
and cut into consecutive batches, so every row is used once per epoch.
"""

from __future__ import annotations

import torch
from torch import Tensor

from core.validate import integer_at_least

__all__ = ["minibatch"]

# mixes the epoch into the seed; any odd 64-bit constant keeps (seed, epoch) pairs apart
_MIX = 0x9E3779B97F4A7C15


def minibatch(n: int, batch_size: int, seed: int, t: int) -> Tensor:
    """The row indices of inner step ``t`` for a training set of ``n`` rows.

    Args:
        n: training rows.
        batch_size: rows per step; clipped to ``n`` (one batch is then the whole set).
        seed: the job's seed.
        t: the inner step, 0-based.

    Returns:
        A sorted int64 tensor of ``min(batch_size, n)`` distinct indices (fewer for the last
        batch of an epoch when ``batch_size`` does not divide ``n``).

    Raises:
        ConfigurationError: a non-positive ``n`` or ``batch_size``, a negative ``t``.
    """
    integer_at_least(n, "n")
    integer_at_least(batch_size, "batch_size")
    integer_at_least(t, "t", minimum=0)
    b = min(batch_size, n)
    per_epoch = -(-n // b)
    epoch, k = divmod(t, per_epoch)
    gen = torch.Generator().manual_seed((seed * _MIX + epoch) % (1 << 63))
    perm = torch.randperm(n, generator=gen)
    return torch.sort(perm[k * b : (k + 1) * b]).values
