"""What a job interrupted by faults is compared with: the same spec run uninterrupted.

Shared by the fault tests and ``benchmarks.service.chaos``: resume from a checkpoint is exact, so
a job that survived kills and restarts must match these bit for bit.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np

from jobs import parse_spec


def reference(spec: dict[str, Any]) -> tuple[list[float], np.ndarray]:
    """Outer losses and final hparams of the same job run uninterrupted, in this process."""
    losses, arrays = reference_arrays(spec)
    if list(arrays) != ["hparams"]:  # named hyperparameters: no single array to compare
        raise TypeError(f"the spec's hparams are named ({sorted(arrays)}), not one tensor")
    return losses, arrays["hparams"]


def reference_arrays(
    spec: dict[str, Any], datasets: Callable[[str], dict[str, np.ndarray]] | None = None
) -> tuple[list[float], dict[str, np.ndarray]]:
    """Outer losses and final hparams by name, as the job's ``hparams`` artifact holds them
    (``hparams`` for one tensor), of the same job run uninterrupted in this process.

    ``datasets`` resolves an uploaded data set's id to its arrays (a job of a team's upload:
    ``worker.datasets.DatasetSource`` on the store the job ran from).
    """
    import core
    from worker.build import build, hparams_npz

    built = build(parse_spec(spec), datasets=datasets)
    out = core.fit(built.problem, built.hparams, built.dynamics, built.estimator,
                   **built.fit_kwargs)  # fmt: skip
    with np.load(io.BytesIO(hparams_npz(out.hparams))) as z:
        return out.history["outer_loss"], {k: z[k] for k in z.files}


def trace_gaps(iterations: list[int], n: int) -> tuple[int, int]:
    """``(missing, doubled)`` iterations of ``1..n`` in a trace."""
    return len(set(range(1, n + 1)) - set(iterations)), len(iterations) - len(set(iterations))
