"""Which loop runs a job: an estimator's hyper-iterations, or a single-loop method's steps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import core
from jobs.specs.job import JobSpec
from worker.build import Built

__all__ = ["fit_job", "is_single_loop", "single_loop_method"]


def is_single_loop(spec: JobSpec) -> bool:
    """Whether ``hypergradient.method`` names a single-loop method (soba, saba, f2sa)."""
    return spec.hypergradient.method in core.SINGLE_LOOP


def single_loop_method(spec: JobSpec) -> core.SingleLoopMethod:
    """The ``core.single_loop`` method of ``spec``, its steps from ``inner``/``outer``.

    Raises:
        core.ConfigurationError: a setting the method cannot honour, named.
    """
    hg = spec.hypergradient
    if spec.diagnostics.every:
        raise core.ConfigurationError(
            f"diagnostics.every compares unrolled hypergradients; {hg.method} has none "
            f"(set it to 0), got {spec.diagnostics.every}"
        )
    options: dict[str, Any] = {
        "inner_lr": spec.inner.lr,
        "outer_lr": spec.outer.lr,
        "seed": spec.seed,
        **hg.model_dump(exclude={"method", "graphed"}),
    }
    if hg.method == "saba":
        if spec.outer.schedule != "constant":
            raise core.ConfigurationError(
                f"saba takes constant steps: outer.schedule must be 'constant', "
                f"got {spec.outer.schedule!r}"
            )
    else:
        options["schedule"] = spec.outer.schedule
    return core.make_single_loop(hg.method, **options)


def fit_job(
    built: Built,
    spec: JobSpec,
    *,
    callback: Callable[[dict[str, float], core.FitState], Any] | None = None,
    state: core.FitState | None = None,
    keep_history: bool = True,
) -> core.FitResult:
    """Run the job's loop from ``state``: :func:`core.fit` or :func:`core.fit_single_loop`.

    Estimator jobs get the inner warm start and step-size schedule of ``spec.inner`` and,
    with ``outer.batch_size``, one validation batch per hyper-iteration; the
    state either loop hands the callback is a ``core.FitState`` whose ``extra`` holds the
    warm start's ``w_T`` or the method's iterates, so checkpoints and resume work alike.

    Raises:
        core.ConfigurationError: a single-loop method on a job it cannot run.
    """
    if not is_single_loop(spec):
        return built.fit(
            callback=callback,
            state=state,
            keep_history=keep_history,
            warm_start=spec.inner.warm_start,
            outer_batches=spec.outer.batch_size is not None,
            seed=spec.seed,
            inner_schedule=spec.inner.schedule,
        )
    if built.before_iteration is not None:
        raise core.ConfigurationError(
            f"{spec.hypergradient.method} runs on a fixed problem; one_shot's meta-batches "
            "need an estimator"
        )
    return core.fit_single_loop(
        built.problem,
        built.hparams,
        single_loop_method(spec),
        iterations=spec.outer.iterations,
        callback=callback,
        state=state,
        keep_history=keep_history,
    )
