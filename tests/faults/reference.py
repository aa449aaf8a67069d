"""What a job interrupted by faults is compared with: the same spec run uninterrupted.

Shared by the fault tests and ``benchmarks.service.chaos``: resume from a checkpoint is exact, so
a job that survived kills and restarts must match these bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from jobs import parse_spec


def reference(spec: dict[str, Any]) -> tuple[list[float], np.ndarray]:
    """Outer losses and final hparams of the same job run uninterrupted, in this process."""
    import core
    from worker.build import build

    built = build(parse_spec(spec))
    out = core.fit(built.problem, built.hparams, built.dynamics, built.estimator,
                   **built.fit_kwargs)  # fmt: skip
    if isinstance(out.hparams, Mapping):  # named hyperparameters: no single array to compare
        raise TypeError(f"the spec's hparams are named ({sorted(out.hparams)}), not one tensor")
    return out.history["outer_loss"], out.hparams.numpy()


def trace_gaps(iterations: list[int], n: int) -> tuple[int, int]:
    """``(missing, doubled)`` iterations of ``1..n`` in a trace."""
    return len(set(range(1, n + 1)) - set(iterations)), len(iterations) - len(set(iterations))
