"""A job's compute budget, estimated from its spec (no torch, no data read).

Two numbers bound what one spec may ask of a worker:

- *work*: ``inner.steps x outer.iterations`` inner steps (each hyper-iteration unrolls the
  inner optimizer once);
- *graph memory*: the bytes of autograd graph held at once, float64. Full reverse mode
  (Eq. 6) keeps the graph of all ``T`` steps, K-RMD (Eq. 8) of the last ``K``, checkpointed
  reverse mode one segment plus ``T / segment`` states, forward mode (Eq. 7) ``M x chunk``
  tangents, the implicit method one step; the exact diagnostics (``diagnostics.every``) run
  full reverse mode as well.

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
from jobs.specs.job import (
    AutoSpec,
    CheckpointedSpec,
    ForwardSpec,
    FullSpec,
    ImplicitSpec,
    JobSpec,
    TruncatedSpec,
)

__all__ = ["BudgetLimits", "Estimate", "budget_errors", "check_budget", "estimate", "sizes"]

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
    method_bytes: int  # the hypergradient method's stored graph
    exact_bytes: int  # the exact diagnostics' (full reverse mode); 0 without diagnostics

    @property
    def graph_bytes(self) -> int:
        """The larger of the two graphs: they are never held at the same time."""
        return max(self.method_bytes, self.exact_bytes)


def sizes(spec: JobSpec, data: DatasetInfo | None = None) -> Sizes | None:
    """The floats ``spec``'s problem keeps, with the inner optimizer's share.

    The kind's :meth:`~jobs.kinds.base.ProblemKind.sizes`, plus momentum's velocity, a
    learned step size, and the step's copy of the state and its gradient. ``None`` when
    the kind cannot be sized (a plugin without ``sizes``).

    Args:
        spec: the job spec.
        data: what the store knows of the data set the spec names, if it names one.
    """
    kind = KINDS[spec.problem.kind]
    named = kind.dataset(spec.problem)
    if data is None and named is not None:  # a built-in table is known without a store
        data = TABLES.get(named[1])
    found = kind.sizes(spec.problem, spec.inner, data)
    if found is None:
        return None
    state, hparams = found.state, found.hparams
    if spec.inner.momentum > 0:
        state *= 2  # the velocity is part of the state
    if spec.inner.learn_lr:
        hparams += 1
    return Sizes(state=state, step=found.step + 2 * state, hparams=hparams)


def estimate(spec: JobSpec, data: DatasetInfo | None = None) -> Estimate:
    """The work and graph memory of ``spec`` (see the module docstring).

    ``data``: what the store knows of the data set the spec names (its shape sizes the
    problem). A kind that cannot be sized holds no graph here: only its work is bounded.
    """
    T = spec.inner.steps
    work = T * spec.outer.iterations
    found = sizes(spec, data)
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
    if isinstance(m, ImplicitSpec):  # one step's graph: the option that sizes a step
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


def check_budget(spec: JobSpec, limits: BudgetLimits, data: DatasetInfo | None = None) -> JobSpec:
    """Raise a ``ValidationError`` naming each field whose budget ``spec`` exceeds.

    ``data``: as for :func:`estimate`.
    """
    raise_errors(budget_errors(spec, limits, data))
    return spec
