"""Whether a job's inner steps run through ``torch.compile``: ``hypergradient.compile``.

``"on"`` compiles, ``"off"`` never does, ``"auto"`` (the default) compiles when it pays.
Compiling costs seconds once and saves a fraction of every later hypergradient (2-3x on a
small CPU model, ``benchmarks.library.peers --compile``): a job of a few seconds would only
lose, a long one gains. :func:`choose` is that rule, pure: it compiles when the time saved,
``eager run x (1 - 1/speed-up)``, covers the compile time, with the speed-up measured on
this worker for the same problem kind, method and shapes; before a measurement for them,
the median measured on the worker's other keys (:class:`Prior`, the same kind and method
first), so that a key's first long job compiles too; on a worker that measured nothing, when
the eager run is at least ``payoff`` times the compile time (a saving of ``1/payoff``).
:class:`AutoCompiled` applies it inside the job: its first hypergradient runs eagerly and
is timed, which, times the iterations left, estimates the eager run.

What a compile costs depends on where torch.compile finds its work (:data:`CACHES`): the
process already holds the compiled code of a job of the same key (``"memory"``: a guard
check, the worker keeps it between jobs of one key, :func:`keep_compiled_for`), the disk
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

import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import torch

import core
from core.tree import flatten
from jobs.specs.job import JobSpec
from worker.compile_cache import (
    CACHES,
    CompileTimes,
    Prior,
    compile_counts,
    keep_compiled_for,
    note_graphs,
    resident_key,
)

__all__ = [
    "CACHES",
    "COMPILED_METHODS",
    "AutoCompiled",
    "CompileChoice",
    "CompileTimes",
    "Prior",
    "choose",
    "compile_key",
    "compile_refusal",
]

#: the methods with a compiled path (an estimator with a ``plan(T)``)
COMPILED_METHODS = ("full", "truncated", "checkpointed", "auto")


# the summary's reason while "auto" has not measured yet: not a choice to keep on resume
_UNDECIDED = "auto: not chosen before the first step"


@dataclass(frozen=True)
class CompileChoice:
    """Whether to compile and why, as the job's summary records it (``compile``)."""

    used: bool
    reason: str


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

    Args:
        setting: ``"auto"``, ``"on"`` or ``"off"``.
        refusal: why this job has no compiled path (:func:`compile_refusal`), or ``None``.
        eager_run_s: the job's estimated eager run time (``"auto"`` only).
        compile_s: the expected compile time (``"auto"`` only).
        payoff: the built-in prior, used when no speed-up was measured on this worker.
        speedup: eager over compiled hypergradient time measured for this job's key.
        cache: where the compile will find its work (:data:`CACHES`), for the reason.
        prior: what the worker's other keys measured, used when ``speedup`` is ``None``.

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


def compile_key(spec: JobSpec, problem: core.BilevelProblem, hparams: Any) -> str:
    """What a compile time depends on: the kind, the method and the tensors' shapes.

    Called with the problem as the first hypergradient sees it (a problem whose data is
    set per hyper-iteration, one-shot's, has no ``init`` before).
    """
    with torch.no_grad():
        w, _ = flatten(problem.init(hparams), "init(hparams)")
    lam, _ = flatten(hparams, "hparams")
    shapes = ",".join(f"{tuple(x.shape)}:{x.dtype}:{x.device.type}" for x in (*w, *lam))
    return f"{spec.problem.kind}|{spec.hypergradient.method}|{shapes}"


@dataclass
class AutoCompiled:
    """An unrolled estimator that decides at its first call whether to compile.

    The first call runs ``estimator`` eagerly and is timed; times the ``iterations`` left it
    estimates the eager run, which :func:`choose` weighs against the compile time known for
    ``key`` from the cache it will find (:data:`CACHES`; ``prior_s`` before any) and the
    speed-up measured for it. From the second call on, the estimator runs compiled
    (:class:`core.Compiled`) or eagerly as chosen; a choice given up front (``"on"``, or
    the one a resumed job made before) skips the measurement. The first compiled call's
    time is recorded under ``key`` with the cache it found, the second's as the speed-up
    over the measured eager call.

    Args:
        estimator: an unrolled reverse estimator (full, truncated, checkpointed).
        setting: ``"auto"`` or ``"on"``.
        iterations: the hypergradients the job will still compute.
        times: the worker's compile times.
        spec: the job's spec, for :func:`compile_key` (found at the first call).
        prior_s: the compile time assumed before one is measured for ``key``.
        payoff: as for :func:`choose`.
        choice: a choice already made.
        notes: the job's summary notes, whose ``compile`` this keeps up to date.
    """

    estimator: Any
    setting: str
    iterations: int
    times: CompileTimes | None
    spec: JobSpec
    prior_s: float
    payoff: float = 10.0
    choice: CompileChoice | None = None
    notes: dict[str, Any] = field(default_factory=dict)
    compiled: core.Compiled | None = field(default=None, init=False)
    key: str | None = field(default=None, init=False)
    # where the compile found (or, before it, will find) its work; the eager call's time
    cache: str | None = field(default=None, init=False)
    eager_s: float | None = field(default=None, init=False)
    _compiled_calls: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.setting == "on" and self.choice is None:
            self.choice = choose("on")
        self._chosen()

    def resume(self, previous: Any) -> None:
        """Keep the choice a job's earlier attempt made (its summary's ``compile``).

        A resumed job then runs as the uninterrupted one would have, compiled or not.
        """
        if self.choice is None and isinstance(previous, dict):
            used, reason = previous.get("used"), previous.get("reason")
            if isinstance(used, bool) and isinstance(reason, str) and reason != _UNDECIDED:
                self.choice = CompileChoice(used, reason)
                self._chosen()

    def _chosen(self) -> None:
        if self.choice is not None and self.choice.used and self.compiled is None:
            self.compiled = core.Compiled(self.estimator)
        self.notes["compile"] = self.summary()
        if self.compiled is not None:
            self.notes["compile_s"] = round(self.compile_s, 3)

    name = "auto_compiled"

    @property
    def exact(self) -> bool:
        """As exact as the estimator it runs."""
        return bool(self.estimator.exact)

    @property
    def meters_saved_tensors(self) -> bool:
        """``False`` once compiled: ``torch.func`` refuses saved-tensor hooks."""
        return self.compiled is None

    @property
    def compile_s(self) -> float:
        """Seconds spent compiling so far."""
        return self.compiled.compile_s if self.compiled is not None else 0.0

    def summary(self) -> dict[str, Any]:
        """The summary's ``compile``: ``{used, seconds, reason}``, and ``cache`` once known.

        ``seconds`` is what this job paid; ``cache`` where its compile found the work
        (:data:`CACHES`), or will find it before the first compiled call.
        """
        choice = self.choice or CompileChoice(False, _UNDECIDED)
        out = {"used": choice.used, "seconds": round(self.compile_s, 3), "reason": choice.reason}
        if self.cache is not None:
            out["cache"] = self.cache
        return out

    def _expected_cache(self, key: str) -> str:
        if resident_key() == key:
            return "memory"
        return "disk" if self.times is not None and self.times.known(key) else "cold"

    def __call__(self, problem: Any, hparams: Any, dynamics: Any) -> core.HypergradientResult:
        """The estimator's result, compiled once chosen."""
        if self.key is None:
            self.key = compile_key(self.spec, problem, hparams)
        if self.compiled is not None:
            return self._compiled_call(self.compiled, self.key, problem, hparams, dynamics)
        if self.choice is not None:
            return self.estimator(problem, hparams, dynamics)  # type: ignore[no-any-return]
        t0 = time.perf_counter()
        res = self.estimator(problem, hparams, dynamics)
        self.eager_s = time.perf_counter() - t0
        self.cache = self._expected_cache(self.key)
        known = speedup = prior = None
        if self.times is not None:
            known = self.times.get(self.key, self.cache)
            speedup = self.times.speedup(self.key)
            prior = None if speedup is not None else self.times.prior(self.key)
        if known is None and prior is not None and prior.compile_s is not None:
            known = prior.compile_s  # a first compile of this key: as slow as its family's
        self.choice = choose(
            self.setting,
            eager_run_s=self.eager_s * max(self.iterations, 1),
            compile_s=self.prior_s if known is None else known,
            payoff=self.payoff,
            speedup=speedup,
            cache=self.cache,
            prior=prior,
        )
        self._chosen()
        return res  # type: ignore[no-any-return]

    def _compiled_call(
        self, compiled: core.Compiled, key: str, problem: Any, hparams: Any, dynamics: Any
    ) -> core.HypergradientResult:
        """One compiled hypergradient; the first records its cost, the second the speed-up."""
        self._compiled_calls += 1
        kept = keep_compiled_for(key) if self._compiled_calls == 1 else ""
        graphs, misses = compile_counts()
        before = compiled.compile_s
        t0 = time.perf_counter()
        res = compiled(problem, hparams, dynamics)
        elapsed = time.perf_counter() - t0
        new_graphs, new_misses = compile_counts()
        note_graphs(new_graphs - graphs)
        if compiled.compile_s > before:
            if self._compiled_calls == 1:
                self.cache = "memory" if kept == "memory" and new_graphs == graphs else (
                    "cold" if new_misses > misses else "disk"
                )  # fmt: skip
            if self.times is not None:
                self.times.put(key, compiled.compile_s - before, cache=self.cache or "cold")
            self._chosen()
        elif self._compiled_calls == 2 and self.eager_s is not None and self.times is not None:
            self.times.put(key, speedup=self.eager_s / elapsed)
        return res
