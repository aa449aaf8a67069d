"""One-shot Omniglot's three problems and their task sequences (Section 4.2.3, App. G.3).

What both the reproduction (``bilevel reproduce one-shot``) and the service's ``one_shot``
job need: the meta-training, meta-validation and meta-test problems over Omniglot's
1200/100/323 character split, and seeded task sequences. A service job draws the tasks of
hyper-iteration ``τ`` from a generator of ``(seed, τ)`` alone, so that an attempt resumed from
a checkpoint at ``τ`` sees the very tasks an uninterrupted run would.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from core.data.omniglot import load_omniglot
from core.problems.one_shot import OneShot

__all__ = ["OneShotSplits", "iteration_generator", "task_generator"]

# seeds of the task sequences per iteration: far apart for different job seeds (τ <= 1e6)
_STRIDE = 1_000_003


def task_generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``: one per task sequence, so each is reproducible."""
    return torch.Generator().manual_seed(seed)


def iteration_generator(seed: int, iteration: int) -> torch.Generator:
    """The generator of hyper-iteration ``iteration``'s meta-batch: a function of both alone.

    Args:
        seed: the run's seed, ``>= 0``.
        iteration: the hyper-iteration ``τ >= 1`` (0 for what comes before the first).
    """
    return task_generator(seed * _STRIDE + iteration)


@dataclass(frozen=True)
class OneShotSplits:
    """One :class:`OneShot` problem per split of Omniglot's characters (1200/100/323)."""

    train: OneShot
    val: OneShot
    test: OneShot

    @classmethod
    def from_omniglot(cls, data_dir: str | Path, *, seed: int = 0, **options: Any) -> OneShotSplits:
        """Load Omniglot from ``data_dir`` (28x28) and build the three problems alike.

        Args:
            data_dir: the folder holding ``omniglot/`` (see :func:`core.data.load_omniglot`).
            seed: seed of the character split.
            **options: :class:`OneShot`'s keyword arguments (``ways``, ``shots``,
                ``queries``, ``meta_batch``, ``width``, ``regularize``, ``dtype``, ``device``).

        Raises:
            ConfigurationError: missing or corrupt files, sizes out of range.
        """
        data = load_omniglot(data_dir, seed=seed)
        train, val, test = (OneShot(data.split(p), **options) for p in ("train", "val", "test"))
        return cls(train=train, val=val, test=test)
