"""Seeded, class-balanced splits and label corruption, reproducible from a seed alone.

Everything here draws from its own ``torch.Generator`` seeded by the caller, so a split
depends only on ``(labels, sizes, seed)`` and never on global random state.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from core.errors import ConfigurationError

__all__ = ["class_balanced_split", "corrupt_labels"]


def class_balanced_split(labels: Tensor, sizes: Sequence[int], *, seed: int = 0) -> list[Tensor]:
    """Split example indices into parts with (almost) equal counts per class, plus the rest.

    Each part of size ``n`` takes ``n // C`` examples of every one of the ``C`` classes
    present; the remainder ``n % C`` goes one each to classes chosen at random. Within a
    class, examples are taken in a seeded random order, so parts never overlap.

    Args:
        labels: int tensor ``[N]``.
        sizes: the size of each part.
        seed: seeds the permutation.

    Returns:
        ``len(sizes) + 1`` sorted int64 index tensors: the parts, then all remaining indices.

    Raises:
        ConfigurationError: a negative size, or a class with too few examples.

    Example:
        >>> y = torch.arange(100) % 10
        >>> train, val, rest = class_balanced_split(y, [20, 30], seed=0)
        >>> [len(train), len(val), len(rest)], torch.bincount(y[train]).tolist()
        ([20, 30, 50], [2, 2, 2, 2, 2, 2, 2, 2, 2, 2])
    """
    if any(isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in sizes):
        raise ConfigurationError(f"sizes must be integers >= 0, got {list(sizes)}")
    gen = torch.Generator().manual_seed(seed)
    labels = labels.cpu().long()
    classes = torch.unique(labels)
    pools = [torch.nonzero(labels == c).flatten() for c in classes]
    pools = [p[torch.randperm(len(p), generator=gen)] for p in pools]
    used = [0] * len(pools)
    parts = []
    for n in sizes:
        per_class = torch.full((len(classes),), n // len(classes), dtype=torch.long)
        per_class[torch.randperm(len(classes), generator=gen)[: n % len(classes)]] += 1
        chosen = []
        for k, (pool, m) in enumerate(zip(pools, per_class.tolist())):
            if used[k] + m > len(pool):
                raise ConfigurationError(
                    f"class {int(classes[k])} has {len(pool)} examples, too few for parts "
                    f"of sizes {list(sizes)} balanced over {len(classes)} classes"
                )
            chosen.append(pool[used[k] : used[k] + m])
            used[k] += m
        parts.append(torch.sort(torch.cat(chosen)).values)
    rest = torch.cat([pool[u:] for pool, u in zip(pools, used)])
    parts.append(torch.sort(rest).values)
    return parts


def corrupt_labels(
    labels: Tensor, n_classes: int, *, fraction: float = 0.5, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Replace a ``fraction`` of the labels by uniformly random ones (Appendix G.1).

    Exactly ``round(fraction · N)`` examples, chosen at random, get a label drawn uniformly
    from all ``n_classes`` classes; about one in ``n_classes`` of them draws its own label
    back. Only the examples whose label actually changed count as corrupted: those are the
    ones a hyper-cleaner should flag.

    Args:
        labels: int tensor ``[N]``.
        n_classes: number of classes to draw from.
        fraction: in ``[0, 1]``.
        seed: seeds both the choice of examples and the new labels.

    Returns:
        ``(noisy_labels, corrupted)``: the new int64 labels and a bool mask of the examples
        whose label differs from the original.

    Raises:
        ConfigurationError: ``fraction`` outside ``[0, 1]`` or ``n_classes < 2``.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ConfigurationError(f"fraction must be in [0, 1], got {fraction!r}")
    if n_classes < 2:
        raise ConfigurationError(f"n_classes must be >= 2, got {n_classes!r}")
    gen = torch.Generator().manual_seed(seed)
    labels = labels.long()
    n = labels.shape[0]
    chosen = torch.randperm(n, generator=gen)[: round(fraction * n)].to(labels.device)
    new = torch.randint(n_classes, (len(chosen),), generator=gen).to(labels.device)
    noisy = labels.clone()
    noisy[chosen] = new
    return noisy, noisy != labels
