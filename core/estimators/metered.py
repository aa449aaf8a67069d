"""Any estimator, with the peak memory of each hypergradient it computes reported."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

import torch

from core.diagnostics import SavedTensorMeter
from core.dynamics import GradientDescent
from core.estimators.base import Estimator, HypergradientResult
from core.problem import BilevelProblem
from core.tree import Tree, flatten

__all__ = ["Metered"]


@dataclass(frozen=True)
class Metered:
    """Run ``estimator`` and add ``info["peak_bytes"]``: the memory its hypergradient held.

    On a CUDA device it is the allocator's peak above what was allocated before the call
    (``torch.cuda.max_memory_allocated``, reset first). On the CPU it is the deterministic
    peak of bytes autograd saved for backward (:class:`core.SavedTensorMeter`) plus the
    states the estimator kept outside autograd (``info["stored_bytes"]``): the quantity of
    Table 1's memory column, ``O(MT)`` for full RMD (Eq. 6) and ``O(MK)`` for K-RMD (Eq. 8).
    :func:`core.fit` records it per hyper-iteration when present. An estimator whose
    class sets ``meters_saved_tensors = False`` (:class:`core.Compiled`: ``torch.func``
    refuses saved-tensor hooks) gets no CPU figure rather than a wrong one.

    Args:
        estimator: the estimator to measure; its result is otherwise unchanged.
    """

    estimator: Estimator

    name: ClassVar[str] = "metered"

    @property
    def exact(self) -> bool:
        """As exact as the estimator it measures."""
        return self.estimator.exact

    def __call__(
        self, problem: BilevelProblem[Any, Any], hparams: Tree, dynamics: GradientDescent
    ) -> HypergradientResult:
        """The estimator's result, with ``info["peak_bytes"]`` added."""
        leaves, _ = flatten(hparams, "hparams")
        device = leaves[0].device if leaves else torch.device("cpu")
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            before = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
            res = self.estimator(problem, hparams, dynamics)
            torch.cuda.synchronize(device)
            peak = torch.cuda.max_memory_allocated(device) - before
        elif not getattr(self.estimator, "meters_saved_tensors", True):
            return self.estimator(problem, hparams, dynamics)
        else:
            with SavedTensorMeter() as meter:
                res = self.estimator(problem, hparams, dynamics)
            peak = meter.peak + int(res.info.get("stored_bytes", 0))
        return replace(res, info={**res.info, "peak_bytes": int(peak)})
