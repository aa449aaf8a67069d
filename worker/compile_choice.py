"""Whether a job's inner steps run through ``torch.compile``: ``hypergradient.compile``.

``"on"`` compiles, ``"off"`` never does, ``"auto"`` (the default) compiles when it pays: when
the job's estimated eager run time is at least ``payoff`` times the compile time. Compiling
costs seconds once (more on a cold cache) and saves a fraction of every later hypergradient
(1.4-1.9x on a small CPU model, ``benchmarks.library.peers --compile``): a job of a few
seconds would only lose, a long one gains. :func:`choose` is that rule, pure;
:class:`AutoCompiled` applies it inside the job: its first hypergradient runs eagerly and
is timed, which, times the iterations left, estimates the eager run; the compile time is
the one measured on this worker for the same problem kind and shapes
(:class:`CompileTimes`, a small JSON file next to torch.compile's own cache), or a prior
before the first.

Only unrolled reverse methods have a compiled path (:class:`core.Compiled`: full,
truncated, checkpointed, auto). Forward mode propagates ``M`` tangents through
``torch.func.jvp`` of the eager step (a chunk's shapes vary); the implicit method spends its
time in a linear solver's Hessian-vector products, not in unrolled steps; the single-loop
methods take one step a minibatch whose rows change every step (a compiled kernel would
specialise on them or recompile), so they run eagerly and their summary says why.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import core
from core.tree import flatten
from jobs.specs.job import JobSpec

__all__ = [
    "COMPILED_METHODS",
    "AutoCompiled",
    "CompileChoice",
    "CompileTimes",
    "choose",
    "compile_key",
    "compile_refusal",
    "use_compile_cache",
]

log = logging.getLogger(__name__)

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
) -> CompileChoice:
    """The rule of ``hypergradient.compile``.

    Args:
        setting: ``"auto"``, ``"on"`` or ``"off"``.
        refusal: why this job has no compiled path (:func:`compile_refusal`), or ``None``.
        eager_run_s: the job's estimated eager run time (``"auto"`` only).
        compile_s: the expected compile time (``"auto"`` only).
        payoff: ``"auto"`` compiles when ``eager_run_s >= payoff * compile_s``.

    Returns:
        The choice and its reason, naming the field or the two times compared.
    """
    if setting == "off":
        return CompileChoice(False, "hypergradient.compile is 'off'")
    if refusal is not None:
        return CompileChoice(False, refusal)
    if setting == "on":
        return CompileChoice(True, "hypergradient.compile is 'on'")
    if eager_run_s is None or compile_s is None:
        return CompileChoice(False, "auto: no estimate of the run time yet")
    verdict = ">=" if eager_run_s >= payoff * compile_s else "<"
    reason = (
        f"auto: estimated eager run {eager_run_s:.3g} s {verdict} {payoff:g} x compile time "
        f"{compile_s:.3g} s"
    )
    return CompileChoice(verdict == ">=", reason)


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
class CompileTimes:
    """Compile times measured on this worker, by :func:`compile_key`, in a JSON file.

    The latest measurement of a key replaces the earlier one: with torch.compile's disk
    cache warm, a later job compiles faster than the first. A missing or unreadable file
    reads as empty; writes go through a temporary file and a rename.
    """

    path: Path

    def get(self, key: str) -> float | None:
        """The last compile time measured for ``key``."""
        value = self._read().get(key)
        return float(value) if isinstance(value, int | float) else None

    def put(self, key: str, seconds: float) -> None:
        """Record ``seconds`` for ``key``."""
        data = {**self._read(), key: round(seconds, 3)}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, sort_keys=True)
            os.replace(tmp, self.path)
        except OSError:  # a cache that cannot be written costs a prior next time, no more
            log.warning("compile times: cannot write %s", self.path, exc_info=True)

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}


@dataclass
class AutoCompiled:
    """An unrolled estimator that decides at its first call whether to compile.

    The first call runs ``estimator`` eagerly and is timed; times the ``iterations`` left it
    estimates the eager run, which :func:`choose` compares with the compile time known for
    ``key`` (or ``prior_s``). From the second call on, the estimator runs compiled
    (:class:`core.Compiled`) or eagerly as chosen; a choice given up front (``"on"``, or
    the one a resumed job made before) skips the measurement. The first compiled call's
    time is recorded under ``key``.

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
        """The summary's ``compile``: ``{used, seconds, reason}``."""
        choice = self.choice or CompileChoice(False, _UNDECIDED)
        return {"used": choice.used, "seconds": round(self.compile_s, 3), "reason": choice.reason}

    def __call__(self, problem: Any, hparams: Any, dynamics: Any) -> core.HypergradientResult:
        """The estimator's result, compiled once chosen."""
        if self.key is None:
            self.key = compile_key(self.spec, problem, hparams)
        if self.compiled is not None:
            before = self.compiled.compile_s
            res = self.compiled(problem, hparams, dynamics)
            if self.compiled.compile_s > before:
                if self.times is not None:
                    self.times.put(self.key, self.compiled.compile_s - before)
                self._chosen()
            return res
        if self.choice is not None:
            return self.estimator(problem, hparams, dynamics)  # type: ignore[no-any-return]
        t0 = time.perf_counter()
        res = self.estimator(problem, hparams, dynamics)
        elapsed = time.perf_counter() - t0
        known = self.times.get(self.key) if self.times is not None else None
        self.choice = choose(
            self.setting,
            eager_run_s=elapsed * max(self.iterations, 1),
            compile_s=self.prior_s if known is None else known,
            payoff=self.payoff,
        )
        self._chosen()
        return res  # type: ignore[no-any-return]


def use_compile_cache(path: Path) -> None:
    """Point torch.compile's caches at the worker's shared directory ``path`` (unless the
    operator did).

    Inductor reads ``TORCHINDUCTOR_CACHE_DIR`` when it first compiles, after this runs. The
    in-memory caches of earlier jobs are dropped: torch.compile keeps at most a few
    variants of one function (``recompile_limit``) and past them runs it eagerly, without a
    word, so a long-lived worker would stop compiling after a few jobs of other problems.
    The kernels themselves stay on disk, and a job like an earlier one reloads them.
    """
    path.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(path))
    torch.compiler.reset()
