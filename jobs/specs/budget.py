"""A job's compute budget, estimated from its spec (no torch, no data read).

Two numbers bound what one spec may ask of a worker:

- *work*: ``inner.steps x outer.iterations`` inner steps (each hyper-iteration unrolls the
  inner optimizer once); a single-loop method (SOBA, SABA, F2SA) takes one step on one
  minibatch per iteration instead of ``T``, plus the ``inner.steps`` of its final report;
- *graph memory*: the bytes of autograd graph held at once, float64. Full reverse mode
  (Eq. 6) keeps the graph of all ``T`` steps, K-RMD (Eq. 8) of the last ``K``, checkpointed
  reverse mode one segment plus ``T / segment`` states, forward mode (Eq. 7) ``M x chunk``
  tangents, the implicit method one step; the exact diagnostics (``diagnostics.every``) run
  full reverse mode as well. A single-loop method holds one step's graph and its iterates,
  and SABA its memory of one direction per batch (:func:`saba_memory`); its final report
  (full RMD through ``inner.steps`` at the learned ``λ``) is sized like the diagnostics.

The per-step sizes come from each problem kind (:meth:`jobs.kinds.base.ProblemKind.sizes`),
from its options and, over a data set, from what the store knows of the data set's shape;
they are rough upper estimates, meant to catch a spec that is orders of magnitude too big,
not to predict a job's memory to the byte.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pydantic_core import InitErrorDetails

from jobs.kinds.base import DatasetInfo, Sizes, field_error, raise_errors
from jobs.kinds.registry import KINDS
from jobs.kinds.tables import TABLES
from jobs.specs.job import JobSpec
from jobs.specs.methods import (
    AutoSpec,
    CheckpointedSpec,
    ForwardSpec,
    FullSpec,
    ImplicitSpec,
    SABASpec,
    SingleLoopSpec,
    TruncatedSpec,
)

__all__ = [
    "BudgetLimits",
    "Estimate",
    "budget_errors",
    "check_budget",
    "estimate",
    "n_batches",
    "saba_memory",
    "sizes",
]

FLOAT_BYTES = 8


@dataclass(frozen=True)
class BudgetLimits:
    """The most a spec may ask for (``ApiSettings.max_inner_steps`` / ``max_graph_bytes``)."""

    max_inner_steps: int = 200_000_000
    max_graph_bytes: int = 8 << 30


@dataclass(frozen=True)
class Estimate:
    """What a spec costs: inner steps in all, and graph bytes held at once."""

    inner_steps: int
    method_bytes: int  # the hypergradient method's stored graph (and SABA's memory)
    exact_bytes: int  # the exact diagnostics' (full reverse mode); 0 without diagnostics
    report_bytes: int = 0  # a single-loop job's final report (full RMD); 0 for estimators

    @property
    def graph_bytes(self) -> int:
        """The largest of the graphs: they are never held at the same time."""
        return max(self.method_bytes, self.exact_bytes, self.report_bytes)


def sizes(spec: JobSpec, data: DatasetInfo | None = None) -> Sizes | None:
    """The floats ``spec``'s problem keeps, with the inner optimizer's share.

    The kind's :meth:`~jobs.kinds.base.ProblemKind.sizes`, plus momentum's velocity, a
    learned step size, and the step's copy of the state and its gradient. ``None`` when
    the kind cannot be sized (a plugin without ``sizes``).

    Args:
        spec: the job spec.
        data: what the store knows of the data set the spec names, if it names one.
    """
    found = KINDS[spec.problem.kind].sizes(spec.problem, spec.inner, _data(spec, data))
    if found is None:
        return None
    state, hparams = found.state, found.hparams
    if spec.inner.momentum > 0:
        state *= 2  # the velocity is part of the state
    if spec.inner.learn_lr:
        hparams += 1
    return Sizes(state=state, step=found.step + 2 * state, hparams=hparams)


def n_batches(spec: JobSpec, data: DatasetInfo | None = None) -> tuple[int, int]:
    """``(inner, outer)`` batches the problem splits into: ``⌈rows / batch_size⌉`` each.

    One where a batch size is not set or the kind does not know its rows.
    """
    kind = KINDS[spec.problem.kind]
    rows = kind.rows(spec.problem, _data(spec, data)) or {}
    out = []
    for split, size in (("train", spec.inner.batch_size), ("val", spec.outer.batch_size)):
        n = rows.get(split)
        out.append(1 if size is None or n is None or size >= n else -(-n // size))
    return out[0], out[1]


def saba_memory(state: int, hparams: int, inner: int, outer: int) -> int:
    """Floats of SABA's memory (:class:`core.single_loop.SABA`) and its running means.

    Per inner batch the last ``∇_w g_i`` and ``∇²_ww g_i v`` (``state`` each) and
    ``∇²_λw g_i v`` (``hparams``); per outer batch ``∇_w f_j`` and ``∇_λ f_j``; one mean of
    each. ``state`` is the inner parameters' floats, without an optimizer's velocity.
    """
    return (inner + 1) * (2 * state + hparams) + (outer + 1) * (state + hparams)


def _data(spec: JobSpec, data: DatasetInfo | None) -> DatasetInfo | None:
    named = KINDS[spec.problem.kind].dataset(spec.problem)
    if data is None and named is not None:  # a built-in table is known without a store
        return TABLES.get(named[1])
    return data


def _single_loop(spec: JobSpec, data: DatasetInfo | None, found: Sizes | None) -> Estimate:
    """One minibatch step per iteration; one step's graph, the iterates, SABA's memory."""
    T = spec.inner.steps
    work = spec.outer.iterations + T
    if found is None:
        return Estimate(inner_steps=work, method_bytes=0, exact_bytes=0)
    raw = KINDS[spec.problem.kind].sizes(spec.problem, spec.inner, _data(spec, data))
    state = raw.state if raw is not None else found.state
    # w, v (or F2SA's two inner iterates) and the directions of one step
    floats = found.step + 4 * state + 2 * found.hparams
    if isinstance(spec.hypergradient, SABASpec):
        floats += saba_memory(state, found.hparams, *n_batches(spec, data))
    return Estimate(
        inner_steps=work,
        method_bytes=floats * FLOAT_BYTES,
        exact_bytes=0,
        report_bytes=T * found.step * FLOAT_BYTES,
    )


def estimate(spec: JobSpec, data: DatasetInfo | None = None) -> Estimate:
    """The work and graph memory of ``spec`` (see the module docstring).

    ``data``: what the store knows of the data set the spec names (its shape sizes the
    problem). A kind that cannot be sized holds no graph here: only its work is bounded.
    """
    T = spec.inner.steps
    work = T * spec.outer.iterations
    found = sizes(spec, data)
    if isinstance(spec.hypergradient, SingleLoopSpec):
        return _single_loop(spec, data, found)
    if found is None:
        return Estimate(inner_steps=work, method_bytes=0, exact_bytes=0)
    state, step, n_hparams = found.state, found.step, found.hparams
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
        inner_steps=work,
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
    if isinstance(m, SABASpec) and spec.inner.batch_size is not None:
        # SABA's memory holds one slot per batch: larger batches, fewer slots
        return ("inner", "batch_size"), spec.inner.batch_size
    if isinstance(m, ImplicitSpec | SingleLoopSpec):
        # one step's graph: the option that sizes a step
        found = KINDS[spec.problem.kind].size_field(spec.problem)
        if found is not None:
            return found
    return ("inner", "steps"), spec.inner.steps


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def budget_errors(
    spec: JobSpec, limits: BudgetLimits, data: DatasetInfo | None = None
) -> list[InitErrorDetails]:
    """One error per exceeded limit, at the field to change, stating the value and limit.

    ``data``: as for :func:`estimate`.
    """
    errors: list[InitErrorDetails] = []

    def add(loc: tuple[str, ...], value: Any, message: str) -> None:
        errors.append(field_error(loc, value, message, "budget"))

    est = estimate(spec, data)
    steps, iterations = spec.inner.steps, spec.outer.iterations
    if est.inner_steps > limits.max_inner_steps and isinstance(spec.hypergradient, SingleLoopSpec):
        add(
            ("outer", "iterations"),
            iterations,
            f"outer.iterations + inner.steps = {iterations} + {steps} = {est.inner_steps} "
            f"steps (one minibatch step per iteration and the final report's unroll), over "
            f"the limit of {limits.max_inner_steps} (max_inner_steps); "
            f"got outer.iterations={iterations}",
        )
    elif est.inner_steps > limits.max_inner_steps:
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
    if est.report_bytes > limit:
        add(
            ("inner", "steps"),
            steps,
            f"the final report of hypergradient.method={spec.hypergradient.method} runs full "
            f"reverse mode through inner.steps={steps}: about {_size(est.report_bytes)} of "
            f"graph ({est.report_bytes} bytes), over the limit of {_size(limit)} ({limit} "
            f"bytes, max_graph_bytes); got inner.steps={steps}",
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


def check_budget(spec: JobSpec, limits: BudgetLimits, data: DatasetInfo | None = None) -> JobSpec:
    """Raise a ``ValidationError`` naming each field whose budget ``spec`` exceeds.

    ``data``: as for :func:`estimate`.
    """
    raise_errors(budget_errors(spec, limits, data))
    return spec
