"""``hypergradient.compile`` inside a job: :class:`AutoCompiled` applies ``choose``.

The job's first hypergradient runs eagerly and is timed; times the iterations left it
estimates the eager run, which ``worker.compile_choice.choose`` weighs against the compile
time and the speed-up this worker measured. Compiled in the foreground, the next call pays
the compile; compiled in the background (no speed-up measured for the key yet, a long job),
a forked child compiles into the disk cache (``worker.compile_background``) while the job
runs eagerly, and the first call after it exited compiles from that cache, the next one
measures the speed-up: under 1 the job goes back to eager.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import core
from core.tree import flatten
from jobs.specs.job import JobSpec
from worker.compile_background import BackgroundCompile
from worker.compile_cache import (
    CompileTimes,
    compile_counts,
    keep_compiled_for,
    note_graphs,
    resident_key,
)
from worker.compile_choice import BACKGROUND, CompileChoice, choose, compile_key, spare_core

__all__ = ["AutoCompiled"]

# the summary's reason while "auto" has not measured yet: not a choice to keep on resume
_UNDECIDED = "auto: not chosen before the first step"


def _compile_in_child(compiled: core.Compiled, key: str, *args: Any) -> None:
    """In the forked child: one compiled hypergradient, from the state the job's will start.

    The keys of torch.compile's disk caches depend on what the process compiled since its
    last ``torch.compiler.reset()``; the job's first compiled call resets as
    ``keep_compiled_for`` decides, so the child does the same first (measured without it:
    the job's compile missed all the child had written and cost a cold compile, 5.3 s).
    """
    keep_compiled_for(key)
    compiled(*args)


@dataclass
class AutoCompiled:
    """An unrolled estimator that decides at its first call whether to compile.

    The first call runs ``estimator`` eagerly and is timed; times the ``iterations`` left it
    estimates the eager run, which ``choose`` weighs against the compile time known for
    ``key`` from the cache it will find (``worker.compile_cache.CACHES``; ``prior_s`` before
    any) and the speed-up measured for it. From the second call on, the estimator runs
    compiled (:class:`core.Compiled`) or eagerly as chosen, or eagerly until a background
    compile (:class:`BackgroundCompile`) exits; a choice given up front (``"on"``, or the
    one a resumed job made before) skips the measurement. The first compiled call's time is
    recorded under ``key`` with the cache it found, the second's as the speed-up over the
    measured eager call. Call :meth:`close` when the job ends.

    Args:
        estimator: an unrolled reverse estimator (full, truncated, checkpointed).
        setting: ``"auto"`` or ``"on"``.
        iterations: the hypergradients the job will still compute.
        times: the worker's compile times.
        spec: the job's spec, for ``compile_key`` (found at the first call).
        prior_s: the compile time assumed before one is measured for ``key``.
        payoff: as for ``choose``.
        choice: a choice already made.
        notes: the job's summary notes, whose ``compile`` this keeps up to date.
        background_min_s: the least estimated eager run, in seconds, that compiles in the
            background (``WorkerSettings.compile_background_min_s``).
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
    background_min_s: float = 0.0
    compiled: core.Compiled | None = field(default=None, init=False)
    key: str | None = field(default=None, init=False)
    # where the compile found (or, before it, will find) its work; the eager call's time
    cache: str | None = field(default=None, init=False)
    eager_s: float | None = field(default=None, init=False)
    background: BackgroundCompile | None = field(default=None, init=False)
    _calls: int = field(default=0, init=False)
    _compiled_calls: int = field(default=0, init=False)
    _switched: bool = field(default=False, init=False)  # compiled after a background compile

    def __post_init__(self) -> None:
        if self.setting == "on" and self.choice is None:
            self.choice = choose("on")
        self._chosen()

    def resume(self, previous: Any) -> None:
        """Keep the choice a job's earlier attempt made (its summary's ``compile``).

        A resumed job then runs as the uninterrupted one would have, compiled or not; one
        killed while its background compile ran decides again.
        """
        if self.choice is None and isinstance(previous, dict) and "background" not in previous:
            used, reason = previous.get("used"), previous.get("reason")
            if isinstance(used, bool) and isinstance(reason, str) and reason != _UNDECIDED:
                self.choice = CompileChoice(used, reason)
                self._chosen()

    def _chosen(self, choice: CompileChoice | None = None) -> None:
        self.choice = choice or self.choice
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
    def used(self) -> bool:
        """Whether the hypergradients run compiled now."""
        return self.choice is not None and self.choice.used

    @property
    def meters_saved_tensors(self) -> bool:
        """``False`` while compiled: ``torch.func`` refuses saved-tensor hooks."""
        return not self.used

    @property
    def compile_s(self) -> float:
        """Seconds this job spent compiling so far (not the background child's)."""
        return self.compiled.compile_s if self.compiled is not None else 0.0

    def summary(self) -> dict[str, Any]:
        """The summary's ``compile``: ``{used, seconds, reason}``, and ``cache`` once known.

        ``seconds`` is what this job paid; ``cache`` where its compile found the work
        (``worker.compile_cache.CACHES``), or will find it before the first compiled call;
        ``background: "running"`` while a background compile runs.
        """
        choice = self.choice or CompileChoice(False, _UNDECIDED)
        out = {"used": choice.used, "seconds": round(self.compile_s, 3), "reason": choice.reason}
        if self.cache is not None:
            out["cache"] = self.cache
        if self.background is not None:
            out["background"] = "running"
        return out

    def close(self) -> None:
        """The job ended: a background compile still running is killed, and the reason says so."""
        if self.background is not None and self.choice is not None:
            self.background.close()
            self.background = None
            reason = f"{self.choice.reason}; the job ended before the background compile did"
            self._chosen(CompileChoice(False, reason))

    def _expected_cache(self, key: str) -> str:
        if resident_key() == key:
            return "memory"
        return "disk" if self.times is not None and self.times.known(key) else "cold"

    def __call__(self, problem: Any, hparams: Any, dynamics: Any) -> core.HypergradientResult:
        """The estimator's result, compiled once chosen (or once compiled in the background)."""
        self._calls += 1
        if self.key is None:
            self.key = compile_key(self.spec, problem, hparams, dynamics, self.estimator)
        if self.compiled is not None and self.used:
            return self._compiled_call(self.compiled, self.key, problem, hparams, dynamics)
        if self.choice is not None:
            res = self.estimator(problem, hparams, dynamics)
            # after the call: the next one then runs compiled from its start, where
            # core.Metered reads meters_saved_tensors (torch.func refuses its hooks)
            if self.background is not None:
                self._poll_background(self.key)
            return res  # type: ignore[no-any-return]
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
        choice = choose(
            self.setting,
            eager_run_s=self.eager_s * max(self.iterations, 1),
            compile_s=self.prior_s if known is None else known,
            payoff=self.payoff,
            speedup=speedup,
            cache=self.cache,
            prior=prior,
            background=BACKGROUND if spare_core() and _on_cpu(hparams) else None,
            background_min_s=self.background_min_s,
        )
        if choice.background:
            compiled = core.Compiled(self.estimator)
            work = partial(_compile_in_child, compiled, self.key, problem, hparams, dynamics)
            try:
                self.background = BackgroundCompile.start(work)
            except OSError as exc:  # no fork here (or no memory for one): eager, and why
                choice = CompileChoice(False, f"{choice.reason}; it could not start ({exc})")
        self._chosen(choice)
        return res  # type: ignore[no-any-return]

    def _poll_background(self, key: str) -> None:
        """Switch to compiled once the background compile exited; stay eager if it failed."""
        assert self.background is not None and self.choice is not None
        outcome = self.background.poll()
        if outcome is None:
            return
        self.background = None
        error, seconds = outcome
        if error is not None:
            reason = f"{self.choice.reason}; the background compile failed ({error}): eager"
            self._chosen(CompileChoice(False, reason))
            return
        if self.times is not None:  # the child's compile found nothing: a cold one
            self.times.put(key, seconds, cache="cold")
        self._switched = True
        reason = (
            f"{self.choice.reason}; compiled in the background in {seconds:.3g} s, "
            f"compiled from hypergradient {self._calls + 1}"
        )
        self._chosen(CompileChoice(True, reason))

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
        elif self._compiled_calls == 2 and self.eager_s is not None:
            self._measured(key, self.eager_s / elapsed)
        return res

    def _measured(self, key: str, speedup: float) -> None:
        """Record the speed-up; after a background compile, say it, and below 1 go eager."""
        if self.times is not None:
            self.times.put(key, speedup=speedup)
        if self._switched and self.choice is not None:
            reason = f"{self.choice.reason}; measured speed-up {speedup:.2f}x"
            self._chosen(CompileChoice(speedup >= 1, reason + ("" if speedup >= 1 else
                                                              " < 1: back to eager")))  # fmt: skip


def _on_cpu(hparams: Any) -> bool:
    """Whether the job computes on the CPU: a forked child cannot use the parent's CUDA context.

    (CUDA refuses to initialise again in a forked process, so on a GPU the child could only
    fail; the job there compiles in the foreground when the rule says so, or not at all.)
    """
    lam, _ = flatten(hparams, "hparams")
    return all(x.device.type == "cpu" for x in lam)
