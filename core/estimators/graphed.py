"""An unrolled reverse-mode estimator replayed as one CUDA graph.

On a GPU, a hypergradient of a small network is bound by kernel launches, not arithmetic:
one-shot Omniglot's T = 50 inner steps on four tasks launch thousands of small kernels,
each costing more CPU time to issue than GPU time to run. A CUDA graph records the whole
computation of Eq. (6)/(8) once (the no-graph prefix, the recorded segment, the backward
pass) and replays it with one launch. The arithmetic is unchanged: the same kernels run on
the same values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from core.dynamics import GradientDescent
from core.errors import ConfigurationError
from core.estimators._unroll import (
    UnrolledEstimator,
    UnrollPlan,
    finish_unrolled,
    unrolled_tensors,
)
from core.estimators.base import HypergradientResult, Setup, prepare
from core.problem import BilevelProblem
from core.tree import Tree, all_finite, flatten
from core.validate import integer_at_least

__all__ = ["Graphed"]


@dataclass
class Graphed:
    """Run ``estimator`` (full RMD, K-RMD or checkpointed RMD) as a replayed CUDA graph.

    The first call on CUDA runs the estimator ``warmup`` times on a side stream (cuDNN
    picks its kernels, the allocator settles), then records one call into a graph whose
    inputs are fixed buffers: ``hparams`` and the problem's :meth:`~core.BilevelProblem.inputs`
    (the meta-batch). Every later call copies the current values into those buffers,
    replays the graph and returns copies of its outputs, so results equal the estimator's
    own up to the non-determinism of some cuDNN backward kernels. A change of problem,
    dynamics, shapes or dtypes records a new graph. On the CPU it simply calls
    ``estimator``.

    The problem's losses must not copy values to the host or branch on them (no
    ``.item()``, no data-dependent Python control flow): a graph replays the recorded
    kernels, whatever the data. The built-in problems qualify.

    Args:
        estimator: an estimator with a ``plan(T)``: :class:`core.Full`,
            :class:`core.Truncated` or :class:`core.Checkpointed`.
        warmup: eager calls before recording, ``>= 1``.

    Raises:
        ConfigurationError: an estimator without ``plan`` or ``warmup < 1``.

    Example:
        >>> import torch, core
        >>> est = core.Graphed(core.Truncated(K=5))  # on a CPU, Truncated(K=5) itself
        >>> res = core.hypergradient(core.problems.Toy(), torch.ones(2, dtype=torch.float64),
        ...                          core.GradientDescent(steps=100, lr=0.1), est)
        >>> res.info["method"], res.info["graphed"]
        ('truncated', False)
    """

    estimator: UnrolledEstimator
    warmup: int = 3

    name: ClassVar[str] = "graphed"
    _graph: Any = field(default=None, init=False, repr=False)
    _key: Any = field(default=None, init=False, repr=False)
    _buffers: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not callable(getattr(self.estimator, "plan", None)):
            raise ConfigurationError(
                "Graphed needs an unrolled reverse estimator (Full, Truncated, Checkpointed), "
                f"got {type(self.estimator).__name__}"
            )
        integer_at_least(self.warmup, "warmup")

    @property
    def exact(self) -> bool:
        """As exact as the estimator it replays."""
        return self.estimator.exact

    def __call__(
        self, problem: BilevelProblem[Any, Any], hparams: Tree, dynamics: GradientDescent
    ) -> HypergradientResult:
        """The wrapped estimator's result, by one graph replay on CUDA (eagerly elsewhere)."""
        leaves, _ = flatten(hparams, "hparams")
        if not leaves or leaves[0].device.type != "cuda":
            result = self.estimator(problem, hparams, dynamics)
            result.info["graphed"] = False
            return result
        plan = self.estimator.plan(dynamics.steps)
        inputs = problem.inputs()
        key = (
            plan.checkpoints,
            plan.include_init,
            tuple((x.shape, x.dtype, x.device) for x in (*leaves, *inputs)),
        )
        owner = self._buffers[3] if self._buffers else None
        if key != self._key or owner is None or owner[0] is not problem or owner[1] is not dynamics:
            self._record(problem, hparams, dynamics, plan, inputs)
            self._key = key
        setup, static_inputs, outputs, _ = self._buffers
        if not all_finite(leaves):  # as prepare() would: a NaN λ is the caller's divergence
            prepare(problem, hparams, dynamics)
        with torch.no_grad():
            for buf, x in zip((*setup.hp, *static_inputs), (*leaves, *inputs)):
                buf.copy_(x)
        self._graph.replay()
        h, loss, w_T, grad_w = outputs
        copies = (
            tuple(x.clone() for x in h),
            loss.clone(),
            tuple(x.clone() for x in w_T),
            tuple(x.clone() for x in grad_w),
        )
        result = finish_unrolled(setup, dynamics, plan, copies)
        result.info["graphed"] = True
        return result

    def _record(
        self,
        problem: BilevelProblem[Any, Any],
        hparams: Tree,
        dynamics: GradientDescent,
        plan: UnrollPlan,
        inputs: tuple[Tensor, ...],
    ) -> None:
        """Warm up on a side stream, then record one pass over fixed buffers."""
        self._graph = self._buffers = None  # free the previous graph's pool first
        checked = prepare(problem, hparams, dynamics)
        hp = tuple(x.detach().clone().requires_grad_(True) for x in checked.hp)
        setup = Setup(
            hp=hp,
            hp_const=tuple(x.detach() for x in hp),
            hp_spec=checked.hp_spec,
            w_spec=checked.w_spec,
        )
        static_inputs = tuple(x.clone() for x in inputs)
        problem.set_inputs(static_inputs)
        try:
            # torch.cuda.Stream.__new__ is unannotated in torch's own sources (2.13)
            side = torch.cuda.Stream(device=hp[0].device)  # type: ignore[no-untyped-call]
            side.wait_stream(torch.cuda.current_stream(hp[0].device))
            with torch.cuda.stream(side):
                for _ in range(self.warmup):
                    unrolled_tensors(problem, setup, dynamics, plan)
            torch.cuda.current_stream(hp[0].device).wait_stream(side)
            # a problem's caches may hold tensors computed by the warm-up, outside the graph:
            # setting the inputs again drops them, so the graph records every computation
            problem.set_inputs(static_inputs)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                outputs = unrolled_tensors(problem, setup, dynamics, plan)
        finally:
            problem.set_inputs(inputs)
        # the graph reads the problem's own tensors (data, constants) by address: holding the
        # problem keeps them alive, and identity (not id(), which a new object may reuse)
        # decides whether the graph still fits
        self._graph, self._buffers = graph, (setup, static_inputs, outputs, (problem, dynamics))
