"""An unrolled reverse-mode estimator whose inner steps run through ``torch.compile``.

On the CPU a small model's hypergradient is bound by the interpreter, not arithmetic: each
step of the generic path (a problem without ``inner_grad``) dispatches a dozen small
operators forward, as many backward, and with a graph as many again for the double backward
of Eq. (6). Compiling the transition ``Ξ(s, λ) = s - γ ∇_w g(s, λ)`` (Eq. 4), written with
``torch.func.grad``, fuses each step into one call: a no-grad kernel for the prefix K-RMD
drops (Eq. 8), and for the recorded steps a forward kernel whose backward, derived by
AOTAutograd, is the step's vector-Jacobian product ``(A_t α, B_t α)`` in one call too. The
unrolling itself, its cuts and the estimators' semantics are those of the eager engine.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from core.dynamics import GradientDescent
from core.errors import ConfigurationError
from core.estimators._unroll import (
    Transition,
    UnrolledEstimator,
    finish_unrolled,
    unrolled_tensors,
)
from core.estimators.base import HypergradientResult, prepare
from core.problem import BilevelProblem
from core.tree import Leaves, Spec, Tree, flatten, unflatten

__all__ = ["Compiled"]

_MODES = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass
class Compiled:
    """Run ``estimator`` (full RMD, K-RMD or checkpointed RMD) with compiled inner steps.

    Every step ``s_{t+1} = Ξ_{t+1}(s_t, λ)`` of Eq. (4) runs as one ``torch.compile``d
    function of ``(s_t, λ)``: :meth:`core.GradientDescent.functional_step`, which takes
    ``∇_w g`` from the problem's ``inner_grad`` or from ``torch.func.grad`` of its
    ``inner_loss``. Without a graph (the steps K-RMD drops, Eq. 8) it is an inference
    kernel; with one, autograd records one node per step whose backward is that step's
    ``(A_t α_t, B_t α_t)`` (Eq. 6). The hypergradient is the estimator's own up to float
    rounding (a fused kernel sums in another order).

    The first call for a new problem, dynamics, grad mode or shape compiles (seconds);
    ``info["compile_s"]`` is the wall time of a call that compiled (compilation and one
    hypergradient; 0 otherwise), the attribute ``compile_s`` its sum over this object's life,
    and ``info["compiled_steps"]`` counts the steps run compiled (replays included). A step
    whose problem view differs from the problem (minibatches,
    :meth:`core.BilevelProblem.at_step`) runs eagerly, so that a compiled kernel never
    specialises on the step index.

    torch.compile keeps a few variants of one function (``recompile_limit``) and past them
    runs it eagerly: a process that compiles for many kinds of problem should call
    ``torch.compiler.reset()`` between them (the worker does, per job).

    In the default ``mode`` Inductor also rewrites a tall, skinny product (the data times a
    linear model's weights) as the transpose of its wide one, which BLAS computes faster
    (``core.estimators._skinny``); another ``mode`` takes no options, so no rewrite.

    Compiled inner steps and :class:`core.Graphed` exclude each other (neither wraps the
    other); ``torch.func`` refuses saved-tensor hooks, so :class:`core.Metered` reports no
    CPU peak for it.

    Args:
        estimator: an estimator with a ``plan(T)``: :class:`core.Full`,
            :class:`core.Truncated` or :class:`core.Checkpointed`.
        mode: ``torch.compile``'s ``mode`` (``None`` for its default).

    Raises:
        ConfigurationError: an estimator without ``plan`` or an unknown ``mode``.

    Example:
        >>> import torch, core
        >>> est = core.Compiled(core.Truncated(K=5))
        >>> res = core.hypergradient(core.problems.Toy(), torch.ones(2, dtype=torch.float64),
        ...                          core.GradientDescent(steps=20, lr=0.1), est)
        >>> res.info["method"], res.info["compiled_steps"]
        ('truncated', 20)
    """

    estimator: UnrolledEstimator
    mode: str | None = None

    name: ClassVar[str] = "compiled"
    # torch.func.grad refuses saved-tensor hooks: core.Metered reports no CPU peak for it
    meters_saved_tensors: ClassVar[bool] = False
    compile_s: float = field(default=0.0, init=False)
    _fn: Any = field(default=None, init=False, repr=False)
    _owner: Any = field(default=None, init=False, repr=False)
    _seen: set[tuple[Any, ...]] = field(default_factory=set, init=False, repr=False)

    def __post_init__(self) -> None:
        if not callable(getattr(self.estimator, "plan", None)):
            raise ConfigurationError(
                "Compiled needs an unrolled reverse estimator (Full, Truncated, Checkpointed), "
                f"got {type(self.estimator).__name__}"
            )
        if self.mode not in _MODES:
            raise ConfigurationError(f"mode must be one of {_MODES}, got {self.mode!r}")

    @property
    def exact(self) -> bool:
        """As exact as the estimator it runs."""
        return self.estimator.exact

    def __call__(
        self, problem: BilevelProblem[Any, Any], hparams: Tree, dynamics: GradientDescent
    ) -> HypergradientResult:
        """The wrapped estimator's ``d_λ f`` (Eq. 5) or ``h_{T-K}`` (Eq. 8), compiled steps."""
        t0 = time.perf_counter()
        plan = self.estimator.plan(dynamics.steps)
        setup = prepare(problem, hparams, dynamics)
        step, counts = self._transition(problem, dynamics, setup.hp_spec)
        variants = len(self._seen)
        tensors = unrolled_tensors(problem, setup, dynamics, plan, step=step)
        result = finish_unrolled(setup, dynamics, plan, tensors)
        # AOTAutograd compiles a backward lazily, at its first use: the whole call is the
        # honest measure of a call that compiled
        compile_s = time.perf_counter() - t0 if len(self._seen) > variants else 0.0
        self.compile_s += compile_s
        result.info.update(compiled_steps=counts[0], compile_s=compile_s, compiled=True)
        return result

    def _transition(
        self, problem: BilevelProblem[Any, Any], dynamics: GradientDescent, hp_spec: Spec
    ) -> tuple[Transition, list[int]]:
        """A :class:`Transition` through the compiled step, and its count of compiled steps."""
        owner = self._owner
        if owner is None or owner[0] is not problem or owner[1] is not dynamics:
            # a closure over this problem and dynamics: torch.compile guards on what it
            # reads from them, so another problem of the same kind and shapes reuses it
            def xi(state: Leaves, hp: Leaves, spec: Spec) -> Leaves:
                return dynamics.functional_step(problem, state, unflatten(hp_spec, hp), spec)

            # the default mode takes options: Inductor's graph pass for tall, skinny products
            # (a mode and options exclude each other)
            if self.mode is None:
                # imported here: torch._inductor, imported with core, would fix its cache
                # directory before a worker points it at its own (worker.compile_cache)
                from core.estimators._skinny import compile_options

                self._fn = torch.compile(xi, options=compile_options())
            else:
                self._fn = torch.compile(xi, mode=self.mode)
            self._owner = (problem, dynamics)
            self._seen = set()
        fn = self._fn
        counts = [0]

        def step(
            problem: BilevelProblem[Any, Any],
            state: Leaves,
            hparams: Tree,
            spec: Spec,
            *,
            create_graph: bool,
            t: int | None = None,
        ) -> Leaves:
            if t is not None and problem.at_step(t) is not problem:
                return dynamics.step(problem, state, hparams, spec, create_graph=create_graph, t=t)
            hp, _ = flatten(hparams, "hparams")
            counts[0] += 1
            # grad mode, dtypes, shapes and which inputs require grad select the variant
            key = (create_graph, *((x.dtype, x.shape, x.requires_grad) for x in (*state, *hp)))
            with torch.set_grad_enabled(create_graph):
                self._seen.add(key)
                out: Leaves = fn(state, hp, spec)
                return out

        return step, counts
