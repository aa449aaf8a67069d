"""A job's compute budget, estimated from its spec alone (no torch, no data).

Two numbers bound what one spec may ask of a worker:

- *work*: ``inner.steps x outer.iterations`` inner steps (each hyper-iteration unrolls the
  inner optimizer once);
- *graph memory*: the bytes of autograd graph held at once, float64. Full reverse mode
  (Eq. 6) keeps the graph of all ``T`` steps, K-RMD (Eq. 8) of the last ``K``, checkpointed
  reverse mode one segment plus ``T / segment`` states, forward mode (Eq. 7) ``M x chunk``
  tangents, the implicit method one step; the exact diagnostics (``diagnostics.every``) run
  full reverse mode as well.

The per-step sizes are rough upper estimates of what ``core`` keeps for each built-in
problem (parameters, the intermediates of one inner gradient); they are meant to catch a
spec that is orders of magnitude too big, not to predict a job's memory to the byte.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from jobs.spec import (
    AutoSpec,
    CheckpointedSpec,
    ForwardSpec,
    FullSpec,
    HypercleaningSpec,
    ImplicitSpec,
    JobSpec,
    OneShotSpec,
    QuadraticSpec,
    TaskInteractionSpec,
    TruncatedSpec,
)

__all__ = ["BudgetLimits", "Estimate", "budget_errors", "check_budget", "estimate"]

FLOAT_BYTES = 8
# feature count of the hypercleaning data sets, before the bias column; 10 classes each
_FEATURES = {"digits": 64, "mnist": 784, "fashion-mnist": 784}
_CLASSES = 10
# raw pixels of the task-interaction data sets (omniglot resized to 28x28)
_TASK_FEATURES = {**_FEATURES, "omniglot": 784}
# one-shot: the task-specific conv layers see 7x7 maps, then 3x3 (28x28 after two poolings)
_ONE_SHOT_MAPS = 7 * 7 + 3 * 3


@dataclass(frozen=True)
class BudgetLimits:
    """The most a spec may ask for (``ApiSettings.max_inner_steps`` / ``max_graph_bytes``)."""

    max_inner_steps: int = 200_000_000
    max_graph_bytes: int = 8 << 30


@dataclass(frozen=True)
class Estimate:
    """What a spec costs: inner steps in all, and graph bytes held at once."""

    inner_steps: int
    method_bytes: int  # the hypergradient method's stored graph
    exact_bytes: int  # the exact diagnostics' (full reverse mode); 0 without diagnostics

    @property
    def graph_bytes(self) -> int:
        """The larger of the two graphs: they are never held at the same time."""
        return max(self.method_bytes, self.exact_bytes)


def _sizes(spec: JobSpec) -> tuple[int, int, int]:
    """``(state floats, floats one inner step's graph keeps, hyperparameter count)``."""
    p = spec.problem
    if isinstance(p, QuadraticSpec):
        params, hparams, step = p.dim, p.n_hparams, 4 * p.dim + p.n_hparams
    elif isinstance(p, HypercleaningSpec) and p.dataset in _FEATURES:
        params = _CLASSES * (_FEATURES[p.dataset] + 1)
        hparams = n_train = p.sizes()[0]
        # logits, softmax, residual and their gradients: a few n_train x classes arrays
        step = 6 * n_train * _CLASSES + 2 * n_train + 4 * params
    elif isinstance(p, TaskInteractionSpec) and p.dataset in _TASK_FEATURES:
        (V, n_train, _), d = p.paper_sizes(), _TASK_FEATURES[p.dataset] + 1
        params, hparams = V * d, V * V + 1
        # logits and softmax of the training rows, and the V x V x d differences w_i - w_j
        step = 6 * n_train * V + 2 * V * V * d + 4 * params
    elif isinstance(p, OneShotSpec):
        w, tasks = p.width, p.meta_batch
        per_task = 2 * (9 * w * w + w) + p.ways * (w + 1)  # conv3, conv4, the classifier
        params, hparams = tasks * per_task, 9 * w + 9 * w * w + 2 * w + per_task + 4
        # conv, pooling, batch-norm and ReLU maps of the support images, per layer
        step = 8 * tasks * p.ways * p.shots * w * _ONE_SHOT_MAPS + 4 * params
    else:  # toy, toy_biased, counterexample: a handful of scalars (and the problems over an
        # uploaded data set, which api.dataset_refs sizes from the data set's shape)
        params, hparams, step = 2, 2, 16
    if spec.inner.momentum > 0:
        params *= 2  # the velocity is part of the state
    if spec.inner.learn_lr:
        hparams += 1
    return params, step + 2 * params, hparams


def estimate(spec: JobSpec, sizes: tuple[int, int, int] | None = None) -> Estimate:
    """The work and graph memory of ``spec`` (see the module docstring).

    ``sizes`` (state floats, floats of one step's graph, hyperparameters) replaces the
    built-in problems' for a problem over an uploaded data set, whose size the spec lacks.
    """
    T = spec.inner.steps
    state, step, n_hparams = sizes or _sizes(spec)
    m = spec.hypergradient
    if isinstance(m, FullSpec):
        floats = T * step
    elif isinstance(m, TruncatedSpec):
        # "iterates" keeps K states and rebuilds one step's graph at a time
        floats = m.K * step if m.store == "graph" else m.K * state + step
    elif isinstance(m, CheckpointedSpec):
        seg = m.segment or math.isqrt(T - 1) + 1
        floats = seg * step + math.ceil(T / seg) * state
    elif isinstance(m, AutoSpec):  # the worker picks K to fit this budget
        floats = math.ceil(m.memory_mb * (1 << 20) / FLOAT_BYTES)
    elif isinstance(m, ForwardSpec):
        floats = state * min(m.chunk or n_hparams, n_hparams) + step
    else:  # implicit: one step's graph and the solver's vectors
        floats = step + 4 * state
    exact = T * step if spec.diagnostics.every else 0
    return Estimate(
        inner_steps=T * spec.outer.iterations,
        method_bytes=floats * FLOAT_BYTES,
        exact_bytes=exact * FLOAT_BYTES,
    )


def _graph_field(spec: JobSpec) -> tuple[tuple[str, ...], Any]:
    """The field that sets the method's stored graph, and its value."""
    m = spec.hypergradient
    if isinstance(m, TruncatedSpec):
        return ("hypergradient", "K"), m.K
    if isinstance(m, CheckpointedSpec) and m.segment:
        return ("hypergradient", "segment"), m.segment
    if isinstance(m, ForwardSpec):
        return ("hypergradient", "chunk"), m.chunk
    if isinstance(m, AutoSpec):
        return ("hypergradient", "memory_mb"), m.memory_mb
    if isinstance(m, ImplicitSpec) and isinstance(spec.problem, HypercleaningSpec):
        return ("problem", "n_train"), spec.problem.sizes()[0]
    return ("inner", "steps"), spec.inner.steps


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def budget_errors(
    spec: JobSpec, limits: BudgetLimits, sizes: tuple[int, int, int] | None = None
) -> list[InitErrorDetails]:
    """One error per exceeded limit, at the field to change, stating the value and limit.

    ``sizes``: as for :func:`estimate`.
    """
    errors: list[InitErrorDetails] = []

    def add(loc: tuple[str, ...], value: Any, message: str) -> None:
        errors.append({"type": PydanticCustomError("budget", message), "loc": loc,
                       "input": value})  # fmt: skip

    est = estimate(spec, sizes)
    steps, iterations = spec.inner.steps, spec.outer.iterations
    if est.inner_steps > limits.max_inner_steps:
        add(
            ("outer", "iterations"),
            iterations,
            f"inner.steps x outer.iterations = {steps} x {iterations} = {est.inner_steps} "
            f"inner steps, over the limit of {limits.max_inner_steps} (max_inner_steps); "
            f"got outer.iterations={iterations}",
        )
    limit = limits.max_graph_bytes
    if est.method_bytes > limit:
        loc, value = _graph_field(spec)
        add(
            loc,
            value,
            f"hypergradient.method={spec.hypergradient.method} would hold about "
            f"{_size(est.method_bytes)} of graph ({est.method_bytes} bytes), over the limit of "
            f"{_size(limit)} ({limit} bytes, max_graph_bytes); got {'.'.join(loc)}={value}",
        )
    if est.exact_bytes > limit:
        every = spec.diagnostics.every
        add(
            ("diagnostics", "every"),
            every,
            f"the exact diagnostics run full reverse mode through inner.steps={steps}: about "
            f"{_size(est.exact_bytes)} of graph ({est.exact_bytes} bytes), over the limit of "
            f"{_size(limit)} ({limit} bytes, max_graph_bytes); got diagnostics.every={every} "
            f"(0 turns them off)",
        )
    return errors


def check_budget(
    spec: JobSpec, limits: BudgetLimits, sizes: tuple[int, int, int] | None = None
) -> JobSpec:
    """Raise a ``ValidationError`` naming each field whose budget ``spec`` exceeds.

    ``sizes``: as for :func:`estimate`.
    """
    errors = budget_errors(spec, limits, sizes)
    if errors:
        raise ValidationError.from_exception_data("JobSpec", errors)
    return spec
