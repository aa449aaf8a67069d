"""Whether a job's inner steps run through ``torch.compile``: ``hypergradient.compile``.

``"on"`` compiles, ``"off"`` never does, ``"auto"`` (the default) compiles when it pays.
Compiling costs seconds once and saves a fraction of every later hypergradient (2-3x on a
small CPU model, ``benchmarks.library.peers --compile``): a job of a few seconds would only
lose, a long one gains. :func:`choose` is that rule, pure: it compiles when the time saved,
``eager run x (1 - 1/speed-up)``, covers the compile time, with the speed-up measured on
this worker for the same key (:func:`compile_key`: problem kind, method, unrolled graph,
shapes); before a measurement for it,
the median measured on the worker's other keys (:class:`Prior`, the same kind and method
first), so that a key's first long job compiles too; on a worker that measured nothing, when
the eager run is at least ``payoff`` times the compile time (a saving of ``1/payoff``). When
that says no for a key never measured and the eager run is at least :data:`BACKGROUND` times
the compile time, it compiles in the background (``worker.compile_background``): the job
runs eagerly meanwhile and measures the speed-up instead of assuming it.
``worker.auto_compiled.AutoCompiled`` applies it inside the job: its first hypergradient
runs eagerly and is timed, which, times the iterations left, estimates the eager run.

What a compile costs depends on where torch.compile finds its work (:data:`CACHES`): the
process already holds the compiled code of a job of the same key (``"memory"``: a guard
check, the worker keeps it between jobs of one key, ``keep_compiled_for``), the disk
cache under the worker's compile cache holds its kernels (``"disk"``: Dynamo traces again,
Inductor and AOTAutograd load), or nothing does (``"cold"``). :class:`CompileTimes` keeps
the cost of each, and the measured speed-up, per key in a small JSON file next to
torch.compile's own cache. Before a key's first compile, the slowest cold compile of the
keys its prior comes from stands in, else the worker's ``compile_prior_s``.

Only unrolled reverse methods have a compiled path (:class:`core.Compiled`: full,
truncated, checkpointed, auto). Forward mode propagates ``M`` tangents through
``torch.func.jvp`` of the eager step (a chunk's shapes vary); the implicit method spends its
time in a linear solver's Hessian-vector products, not in unrolled steps; the single-loop
methods take one step a minibatch whose rows change every step (a compiled kernel would
specialise on them or recompile), so they run eagerly and their summary says why.
"""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass
from typing import Any

import torch

import core
from core.tree import flatten
from jobs.specs.job import JobSpec
from worker.compile_cache import CACHES, CompileTimes, Prior

__all__ = [
    "BACKGROUND",
    "CACHES",
    "COMPILED_METHODS",
    "CompileChoice",
    "CompileTimes",
    "Prior",
    "choose",
    "compile_key",
    "compile_refusal",
    "spare_core",
]

#: the methods with a compiled path (an estimator with a ``plan(T)``)
COMPILED_METHODS = ("full", "truncated", "checkpointed", "auto")

#: the least eager run, in compile times, that compiles in the background (:func:`choose`):
#: one, a compile expected to finish within the job; a longer compile costs only contention
BACKGROUND = 1.0


@dataclass(frozen=True)
class CompileChoice:
    """Whether to compile and why, as the job's summary records it (``compile``).

    ``background``: not yet, but compile in a child process meanwhile
    (:class:`worker.compile_background.BackgroundCompile`) and switch when it is done.
    """

    used: bool
    reason: str
    background: bool = False


def spare_core() -> bool:
    """Whether this process may use a core its torch threads leave idle (the child's)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (cores or 1) > torch.get_num_threads()


def choose(
    setting: str,
    *,
    refusal: str | None = None,
    eager_run_s: float | None = None,
    compile_s: float | None = None,
    payoff: float = 10.0,
    speedup: float | None = None,
    cache: str | None = None,
    prior: Prior | None = None,
    background: float | None = None,
    background_min_s: float = 0.0,
) -> CompileChoice:
    """The rule of ``hypergradient.compile``.

    ``"auto"`` compiles when the time saved covers the compile time, ``eager_run_s >=
    eager_run_s / s + compile_s``, with ``s`` the speed-up of compiling: the one measured for
    this job's key (``speedup``), else the median of those measured on the worker's other keys
    of the same kind and method, else of any kind (``prior``: a first job of its key then
    compiles when it runs long enough), else the built-in prior, a saving of ``1/payoff``
    (``eager_run_s >= payoff * compile_s``; 10 assumes a speed-up of 1.11x, below all but
    one of the 1.06x to 2.65x ``benchmarks.library.peers --compile`` measured at n=600,
    d=65). The median, not the least: each speed-up is one call against one, and one noisy
    key should not decide for all.

    When that says no but no speed-up was measured for the key (only a prior, or nothing)
    and the eager run is at least ``background`` times the compile time (the compile should
    finish within the job), it compiles in the background: the job runs eagerly meanwhile,
    so a compile that does not pay costs only the contention for the CPU (a few percent with
    a spare core), and the speed-up is then measured, not assumed.

    Args:
        setting: ``"auto"``, ``"on"`` or ``"off"``.
        refusal: why this job has no compiled path (:func:`compile_refusal`), or ``None``.
        eager_run_s: the job's estimated eager run time (``"auto"`` only).
        compile_s: the expected compile time (``"auto"`` only).
        payoff: the built-in prior, used when no speed-up was measured on this worker.
        speedup: eager over compiled hypergradient time measured for this job's key.
        cache: where the compile will find its work (:data:`CACHES`), for the reason.
        prior: what the worker's other keys measured, used when ``speedup`` is ``None``.
        background: the least eager run, in compile times, for a background compile
            (:data:`BACKGROUND`); ``None``: none (no spare core, a caller that cannot).
        background_min_s: and the least eager run in seconds (the worker's
            ``compile_background_min_s``).

    Returns:
        The choice and its reason, naming the field or the times compared, and where the
        speed-up came from.
    """
    if setting == "off":
        return CompileChoice(False, "hypergradient.compile is 'off'")
    if refusal is not None:
        return CompileChoice(False, refusal)
    if setting == "on":
        return CompileChoice(True, "hypergradient.compile is 'on'")
    if eager_run_s is None or compile_s is None:
        return CompileChoice(False, "auto: no estimate of the run time yet")
    where = f", {cache} cache" if cache else ""
    choice = _weigh(eager_run_s, compile_s, payoff, speedup, where, prior)
    if choice.used or speedup is not None or background is None:
        return choice
    if eager_run_s < max(background * compile_s, background_min_s):
        return choice
    return CompileChoice(
        False,
        f"{choice.reason}; no speed-up measured for this key and the eager run >= "
        f"{background:g} x the compile time: compiling in the background, eager meanwhile",
        background=True,
    )


def _weigh(
    eager_run_s: float, compile_s: float, payoff: float, speedup: float | None, where: str,
    prior: Prior | None,
) -> CompileChoice:  # fmt: skip
    """:func:`choose`'s foreground rule: the speed-up measured, else the prior, else payoff."""
    if speedup is not None:
        source = "measured here"
    elif prior is not None:
        speedup = statistics.median(prior.speedups)
        scope = "of this kind and method" if prior.scope == "kind|method" else "of any kind"
        source = f"prior: median measured on {prior.keys} other key(s) {scope}"
    else:
        verdict = ">=" if eager_run_s >= payoff * compile_s else "<"
        return CompileChoice(
            verdict == ">=",
            f"auto: estimated eager run {eager_run_s:.3g} s {verdict} {payoff:g} x compile time "
            f"{compile_s:.3g} s{where} (built-in prior: nothing measured on this worker)",
        )
    compiled_run_s = eager_run_s / speedup
    verdict = ">=" if eager_run_s >= compiled_run_s + compile_s else "<"
    return CompileChoice(
        verdict == ">=",
        f"auto: estimated eager run {eager_run_s:.3g} s {verdict} compiled run "
        f"{compiled_run_s:.3g} s (speed-up {speedup:.2f}x {source}) + compile time "
        f"{compile_s:.3g} s{where}",
    )


def compile_refusal(spec: JobSpec, graphed: bool) -> str | None:
    """Why ``spec``'s hypergradients have no compiled path, or ``None`` when they have one."""
    method = spec.hypergradient.method
    if method not in COMPILED_METHODS:
        why = {
            "forward": "forward mode pushes tangents through the eager step",
            "implicit": "the implicit method's time goes to its solver, not unrolled steps",
        }.get(method, "a single-loop method steps on a new minibatch each time")
        return f"hypergradient.method={method!r} has no compiled path: {why}"
    if graphed:
        return "the hypergradients run as CUDA graphs (hypergradient.graphed)"
    if spec.inner.batch_size is not None:
        return (
            f"inner.batch_size={spec.inner.batch_size}: minibatch steps run eagerly in "
            "core.Compiled (a kernel must not specialise on the step)"
        )
    return None


def compile_key(
    spec: JobSpec, problem: core.BilevelProblem, hparams: Any, dynamics: core.GradientDescent,
    estimator: Any,
) -> str:  # fmt: skip
    """What a compile's time and speed-up depend on: kind, method, unrolled graph, shapes.

    The graph is what the estimator unrolls: ``T`` and the estimator's plan (K-RMD's ``K``,
    checkpointed RMD's segment; auto-K's choice), the heavy ball's momentum, a learned step
    size. The compiled step is the same kernel for every ``K``, but the speed-up is not
    (K=1 records one step, K=25 twenty-five), so each ``K`` measures its own. A key written
    before it had a graph field matches no job: it only counts as another key's prior.
    Called with the problem as the first hypergradient sees it (a problem whose data is
    set per hyper-iteration, one-shot's, has no ``init`` before).
    """
    with torch.no_grad():
        w, _ = flatten(problem.init(hparams), "init(hparams)")
    lam, _ = flatten(hparams, "hparams")
    shapes = ",".join(f"{tuple(x.shape)}:{x.dtype}:{x.device.type}" for x in (*w, *lam))
    plan = {k: v for k, v in estimator.plan(dynamics.steps).info.items() if k != "method"}
    graph = {"T": dynamics.steps, **plan, "momentum": dynamics.momentum or None,
             "lr": dynamics.lr_key}  # fmt: skip
    unrolled = ",".join(f"{k}={v}" for k, v in graph.items() if v is not None)
    return f"{spec.problem.kind}|{spec.hypergradient.method}|{unrolled}|{shapes}"
