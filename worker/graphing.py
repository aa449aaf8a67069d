"""Whether a job's hypergradients run as CUDA graphs (``core.Graphed``), and why not.

A hypergradient of a small network is bound by kernel launches on a GPU; one replayed graph
per hypergradient removes them (about 8x on one-shot Omniglot on an H200). It applies when
the job runs on CUDA, the method unrolls the inner steps (full, truncated, checkpointed, or
auto, which picks one of the first two) and the problem's losses replay as recorded: no
host-side values, which excludes per-step minibatches (their rows are drawn on the host at
each step) and problems that are not built in.
"""

from __future__ import annotations

import torch

import core
from jobs.specs.job import JobSpec

__all__ = ["GRAPHED_METHODS", "graph_refusal"]

# the methods whose estimators have a plan(T) that core.Graphed records
GRAPHED_METHODS = ("full", "truncated", "checkpointed", "auto")


def graph_refusal(spec: JobSpec, device: torch.device) -> str | None:
    """``None`` when ``spec``'s hypergradients run through ``core.Graphed``, else why not.

    The reason names the field or condition that decides it; the job's summary records it
    (``graphed_reason``).
    """
    method = spec.hypergradient
    if not method.graphed:
        return "hypergradient.graphed is false"
    if getattr(method, "compile", "off") == "on":
        # core.Graphed refuses a core.Compiled inside it: torch.compile owns the kernels
        return "hypergradient.compile is 'on': the inner steps run through torch.compile"
    if device.type != "cuda":
        return f"device {device.type}: CUDA graphs need a CUDA device"
    if method.method not in GRAPHED_METHODS:
        return (
            f"hypergradient.method={method.method!r} does not unroll the inner steps "
            f"(graphed: {', '.join(GRAPHED_METHODS)})"
        )
    if spec.inner.batch_size is not None:
        return (
            f"inner.batch_size={spec.inner.batch_size}: each inner step's rows are drawn "
            "on the host, which a recorded graph would freeze"
        )
    if spec.outer.batch_size is not None:
        return (
            f"outer.batch_size={spec.outer.batch_size}: each hyper-iteration's validation "
            "batch is drawn on the host, which a recorded graph would freeze"
        )
    if spec.problem.kind not in core.problems.PROBLEMS:
        kind = spec.problem.kind
        return f"problem.kind={kind!r} is not built in: its losses may read host values"
    return None
