"""Run one job: claim it, fit with ``core``, stream its trace, checkpoint, finish.

The same code runs under Celery (``worker.tasks``) and in the embedded executor
(``worker.local``), in both in a job process that the watchdog (``worker.watchdog``) kills
when a hyper-iteration hangs. PostgreSQL (or SQLite) is the record: the claim is a
conditional update, every write after it is fenced by the attempt number, and a resumed
attempt continues from the last checkpoint exactly (``core.fit(state=...)`` is
bit-identical), after deleting any trace points written past that checkpoint so that no
iteration is missing or doubled.
The trace is written by a thread of its own (``worker.trace_writer``): the training loop
(``worker.progress``) hands each batch over and goes on, a checkpoint commits with or after
every point up to it, a lost lease, a cancel or a store failure stops the loop at its next
iteration, and every point is committed before the job is marked succeeded. The lease is
renewed by another thread (``worker.heartbeat``).
A job's running time is summed over its attempts (``summary.run_s``); past its limit (the
spec's ``time_limit_s``, or the worker's ``max_job_time_s``) it fails between two
hyper-iterations with ``TimeLimitExceeded``, keeping its trace up to there.
"""

from __future__ import annotations

import json
import logging
import os
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

import core
from jobs.kinds.registry import load_plugin_factories
from jobs.plugins import PluginError
from jobs.specs.admission import admit
from jobs.specs.job import JobSpec
from jobs.status import JobStatus
from jobs.store import repo
from jobs.store.repo import LeaseState
from worker import attempt, last_flush
from worker.attempt import worker_name
from worker.build import Built, CompileOptions, build, hparams_npz, to_jsonable
from worker.checkpoint import load_checkpoint
from worker.compile_cache import CompileTimes, use_compile_cache
from worker.dataset_cache import DatasetCache
from worker.datasets import DatasetSource
from worker.divergence import DivergenceWatch
from worker.errors import Diverged, LeaseLost, StoreUnavailable, TimeLimitExceeded
from worker.heartbeat import Heartbeat
from worker.learned import summarise
from worker.methods import fit_job
from worker.outcome import Outcome
from worker.progress import Progress
from worker.pruning import PruneCheck, Stall
from worker.retry import retrying
from worker.settings import WorkerSettings
from worker.shutdown import request_shutdown
from worker.trace_writer import TraceWriter

__all__ = ["execute_job", "request_shutdown", "run_claim", "warm_up", "worker_name"]

log = logging.getLogger(__name__)


def warm_up(compile_cache: Path | None = None) -> None:
    """Load the plugins' factories, then run a two-iteration toy fit (compiled, with a cache).

    A plugin whose factory breaks its contract is refused here, with a logged error naming
    its package (``jobs.kinds.registry.load_plugin_factories``); torch's lazy initialisation
    (Inductor's, about 4 s, with ``compile_cache``: the worker's torch.compile cache) costs
    seconds on first use, paid here: a job whose kernels are on disk compiles in under 1 s.
    """
    load_plugin_factories()
    problem = core.problems.Toy()
    estimator: core.Estimator = core.Truncated(K=2)
    if compile_cache is not None:
        use_compile_cache(compile_cache)
        estimator = core.Compiled(core.Truncated(K=2))
    dynamics = core.GradientDescent(steps=3, lr=0.1)
    core.fit(problem, problem.initial_hparams(), dynamics, estimator, iterations=2, exact_every=1)


def execute_job(
    sessions: sessionmaker[Session],
    job_id: uuid.UUID | str,
    settings: WorkerSettings,
    *,
    worker: str | None = None,
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> Outcome:
    """Claim a job of ``job_id``'s queue kind by weighted fair share and run it to its end.

    The job claimed is the one :func:`jobs.fairshare.pick_next` chooses among the queued
    jobs of that kind: ``job_id`` itself when it is the fair choice (always, when it is the
    only one), else the job that should go first; ``job_id`` then waits for a later message.

    Args:
        sessions: the store's session factory.
        job_id: the job the message named (its queue kind is the one served).
        settings: the worker's settings (lease, flush and checkpoint cadence, patience).
        worker: the name to claim under (default ``host:pid``).
        on_record: called with every trace record on the training loop's thread, after it
            is kept and before the time limit and the flush; tests use it to inject faults.

    Returns:
        ``SKIPPED`` when nothing of the kind is queued (a duplicate delivery, or cancelled),
        ``DEFERRED`` when every team with queued jobs already runs its running limit (they
        stay queued, to be sent again when one of their jobs stops), ``LOST`` when the lease
        was taken away meanwhile, ``RELEASED`` when the process is shutting down or the
        scheduler preempted the job, and it went back to the queue, ``STORE_UNAVAILABLE``
        when the store stayed down past the patience, else the final status.
    """
    worker = worker or worker_name()
    claim = attempt.claim(sessions, job_id, settings, worker)
    if not isinstance(claim, repo.Claim):
        return claim
    return run_claim(sessions, claim, settings, on_record=on_record)


def run_claim(
    sessions: sessionmaker[Session],
    claim: repo.Claim,
    settings: WorkerSettings,
    *,
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> Outcome:
    """Run a claimed job to its end, with the lease's heartbeat and the trace writer.

    What :func:`execute_job` does after its claim; a job's process (``worker.watchdog``)
    runs the claims its supervisor makes.

    Args:
        sessions: the store's session factory.
        claim: the attempt held.
        settings: the worker's settings.
        on_record: as for :func:`execute_job`.

    Returns:
        As :func:`execute_job`, but never ``SKIPPED`` nor ``DEFERRED``.
    """
    job_id = claim.job_id
    log.info("job %s: attempt %d on %s (pid %d)", job_id, claim.attempt, claim.worker, os.getpid())
    beat = Heartbeat(sessions, claim, settings.lease_s)
    beat.start()
    writer = TraceWriter(sessions, claim, settings)
    writer.prune_check = PruneCheck.of(sessions, claim.job_id)
    writer.start()
    try:
        return _run_claimed(sessions, claim, settings, beat, writer, on_record)
    except LeaseLost:
        log.warning("job %s: lease lost, attempt %d stops", job_id, claim.attempt)
        return Outcome.LOST
    except StoreUnavailable as exc:
        # the lease runs out and the reaper requeues the job, to resume from its checkpoint
        log.error("job %s: store unavailable, attempt %d stops: %s", job_id, claim.attempt, exc)
        return Outcome.STORE_UNAVAILABLE
    finally:
        # closed already on every normal path; else (an unexpected error) what was handed
        # over is still written, fenced by the attempt, with its checkpoint
        writer.close(check=False)
        beat.stop()


def _run_claimed(
    sessions: sessionmaker[Session],
    claim: repo.Claim,
    settings: WorkerSettings,
    beat: Heartbeat,
    writer: TraceWriter,
    on_record: Callable[[dict[str, Any]], None] | None,
) -> Outcome:
    with sessions() as s:
        job = repo.get_job(s, None, claim.job_id)
        if job is None:  # deleted since the claim: nothing is left to write to
            raise LeaseLost
        spec_data = job.spec
        plugin = job.plugin
        team_id = job.team_id
        # running time of the earlier attempts, as their last flush recorded it
        ran_s = float((job.summary or {}).get("run_s") or 0.0)
        warned = (job.summary or {}).get("warnings") or []
        # an earlier attempt's compile choice, kept so that a resumed job runs as it did
        compiled_before = (job.summary or {}).get("compile")
        saved = repo.load_artifact(s, claim.job_id, "checkpoint")
        checkpoint = saved.data if saved is not None else None
        refused: Exception | None = None
        try:
            # the API's admission again (less its budget, an API setting): a data set deleted
            # since the submit is refused naming it; a plugin kind this worker lacks fails the
            # job once, naming the package (any worker of this image would fail alike)
            spec = admit(spec_data, plugin=plugin, datasets=repo.dataset_lookup(s, team_id))
        except (ValidationError, PluginError) as exc:
            refused = exc
    try:
        if refused is not None:
            raise refused
        if getattr(spec.hypergradient, "compile", "off") != "off":
            use_compile_cache(settings.resolved_compile_cache_dir)
        cache = DatasetCache(settings.resolved_dataset_cache_dir, settings.dataset_cache_bytes)
        source = DatasetSource(sessions, team_id, cache, seed=spec.seed)
        built = build(spec, settings.data_dir, datasets=source,
                      compile_options=_compile_options(settings))  # fmt: skip
        if source.cache_hit is not None:
            built.notes["dataset_cache"] = "hit" if source.cache_hit else "miss"
        state = load_checkpoint(checkpoint, built.device) if checkpoint is not None else None
    except Exception as exc:  # a spec the library rejects fails at once, no retry
        writer.close()
        return _fail(sessions, claim, exc, settings)

    start = state.iteration if state else 0
    if built.compiled is not None:  # "auto" weighs the iterations left against compiling
        built.compiled.iterations = spec.outer.iterations - start
        built.compiled.resume(compiled_before)
    with sessions.begin() as s:
        repo.rewind_trace(s, claim.job_id, start)  # trace and jobs.iteration at the checkpoint
        best = repo.best_outer_loss(s, claim.job_id)
        last = repo.last_outer_loss(s, claim.job_id)
    run = Progress(settings, beat, writer, start, spec.outer.iterations, best, on_record)
    run.last_loss = last
    run.ran_before_s = ran_s
    run.time_limit = attempt.time_limit(spec.time_limit_s, settings)
    run.watch = DivergenceWatch(warnings=warned)
    run.stop_on_divergence = spec.outer.stop_on_divergence
    # the process that ran it: the watchdog replaces a job's process after it hangs
    # (the same dict: compile_s joins it after the fit)
    built.notes["pid"] = os.getpid()
    if state is not None:  # where this attempt took over (after a kill, a release, a restore)
        built.notes["resumed_from"] = start
    run.extra_summary = built.notes
    if spec.outer.stop_when_stalled is not None:
        run.stall = Stall(spec.outer.stop_when_stalled.window,
                          spec.outer.stop_when_stalled.tolerance)  # fmt: skip
    last_flush.track(run)  # what the watchdog's kill writes first (worker.last_flush)
    try:
        # the records go to trace_points; states stay small
        out = fit_job(built, spec, callback=run, state=state, keep_history=False)
    except (LeaseLost, StoreUnavailable):
        raise
    except Exception as exc:
        run.close()  # the points up to the failure are kept
        return _fail(sessions, claim, exc, settings)
    finally:
        last_flush.untrack(run)
        if built.compiled is not None:  # a background compile does not outlive its job
            built.compiled.close()
    if not out.stopped or (run.converged and not run.cancelled):
        if out.stopped:  # outer.stop_when_stalled: converged, its result taken there
            built.notes["converged_at"] = out.state.iteration
        return _succeed(sessions, claim, built, out, run, _learned(spec, built, out, run, claim))
    return _stopped(sessions, claim, settings, beat, out, run)


def _learned(
    spec: JobSpec, built: Built, out: core.FitResult, run: Progress, claim: repo.Claim
) -> dict[str, Any] | None:
    """The pictures of what was learned (worker.learned); never worth failing a job over."""
    try:
        return summarise(spec, built.problem, built.dynamics, out.hparams, run.path)
    except Exception:
        log.warning("job %s: no summary of what was learned", claim.job_id, exc_info=True)
        return None


def _stopped(
    sessions: sessionmaker[Session],
    claim: repo.Claim,
    settings: WorkerSettings,
    beat: Heartbeat,
    out: core.FitResult,
    run: Progress,
) -> Outcome:
    """End a run its callback stopped: preempted (released), pruned, or cancelled."""
    if run.preempted and not run.cancelled:
        run.close()  # the checkpoint at this iteration is written before the release

        def release() -> bool:
            with sessions.begin() as s:
                return repo.release_job(s, claim)

        released = retrying(release, settings.store_patience_s)
        log.info("job %s: released at iteration %d (%s)", claim.job_id, run.iteration,
                 "shutdown" if beat.state != LeaseState.PREEMPT else "preempted")  # fmt: skip
        return Outcome.RELEASED if released else Outcome.LOST
    if run.pruned and not run.cancelled:
        return _prune(sessions, claim, run, out.state.iteration)
    run.close()  # cancelled: keep what was computed

    def cancel() -> bool:
        with sessions.begin() as s:
            return repo.finish_job(
                s,
                claim,
                JobStatus.CANCELLED,
                summary=run.summary(),
                iteration=out.state.iteration,
            )

    cancelled = retrying(cancel, settings.store_patience_s)
    return Outcome.CANCELLED if cancelled else Outcome.LOST


def _prune(
    sessions: sessionmaker[Session], claim: repo.Claim, run: Progress, iteration: int
) -> Outcome:
    """End the member ``pruned`` at ``iteration``, its trace up to there written first."""
    run.close()
    summary = {**run.summary(), "pruned_at": iteration}

    def prune() -> bool:
        with sessions.begin() as s:
            return repo.finish_job(s, claim, JobStatus.PRUNED, summary=summary, iteration=iteration)

    log.info("job %s: pruned by its study at iteration %d", claim.job_id, iteration)
    return Outcome.PRUNED if retrying(prune, run.settings.store_patience_s) else Outcome.LOST


def _compile_options(settings: WorkerSettings) -> CompileOptions:
    """How ``compile="auto"`` decides on this worker: its measured compile times."""
    times = CompileTimes(settings.resolved_compile_cache_dir / "compile-times.json")
    return CompileOptions(times, settings.compile_prior_s, settings.compile_payoff,
                          settings.compile_background_min_s)  # fmt: skip


def _succeed(
    sessions: sessionmaker[Session],
    claim: repo.Claim,
    built: Built,
    out: core.FitResult,
    run: Progress,
    learned: dict[str, Any] | None = None,
) -> Outcome:
    res, metrics = built.final(out.hparams)
    # every batch handed over is committed now; the last one commits with the success below
    run.writer.close()
    summary = {
        **run.summary(),  # with built.notes
        "final_outer_loss": float(res.outer_loss),
        "metrics": metrics,
        "hparams": to_jsonable(out.hparams),
        "learned": learned is not None,  # whether GET /v1/jobs/{id}/learned has it
    }
    hparams = hparams_npz(out.hparams)

    def finish() -> None:
        with sessions.begin() as s:
            _finish_success(s, claim, run, out, hparams, summary)
            if learned is not None:  # GET /v1/jobs/{id}/learned (worker.learned)
                repo.save_artifact(s, claim.job_id, "learned", json.dumps(learned).encode(),
                                   iteration=out.state.iteration,
                                   media_type="application/json")  # fmt: skip

    retrying(finish, run.settings.store_patience_s)
    run.buffer = []
    return Outcome.SUCCEEDED


def _finish_success(
    s: Session,
    claim: repo.Claim,
    run: Progress,
    out: core.FitResult,
    hparams: bytes,
    summary: dict[str, Any],
) -> None:
    # fenced first: a lost lease writes nothing (the transaction is rolled back)
    ok = repo.finish_with_trace(
        s, claim, JobStatus.SUCCEEDED, run.buffer, summary=summary, iteration=out.state.iteration
    )
    if not ok:
        raise LeaseLost
    repo.save_artifact(
        s,
        claim.job_id,
        "hparams",
        hparams,
        iteration=out.state.iteration,
        media_type="application/x-npz",
    )


def _fail(
    sessions: sessionmaker[Session],
    claim: repo.Claim,
    exc: BaseException,
    settings: WorkerSettings,
) -> Outcome:
    error: dict[str, Any] = {"type": type(exc).__name__, "detail": str(exc)}
    if (
        isinstance(exc, (core.DivergenceError, TimeLimitExceeded, Diverged))
        and exc.iteration is not None
    ):
        error["iteration"] = exc.iteration
    if not isinstance(exc, (core.BilevelError, TimeLimitExceeded, Diverged, PluginError)):
        error["traceback"] = "".join(traceback.format_exception(exc))[-4000:]
    return attempt.fail(sessions, claim, error, settings)
