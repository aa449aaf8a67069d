"""The worker's settings (environment ``BILEVEL_*``, ``DATABASE_URL``, ``BROKER_URL``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field

from jobs.settings import StoreSettings

__all__ = ["WorkerSettings"]


class WorkerSettings(StoreSettings):
    # trace points are written in batches at most this often (and at least every N points)
    flush_every_s: float = Field(1.0, gt=0)
    flush_every_n: int = Field(1000, ge=1)
    checkpoint_every_s: float = Field(30.0, gt=0)
    checkpoint_every_n: int = Field(1000, ge=1)
    # the reaper: how often, and after how long a queued job is sent to the broker again
    reap_every_s: float = Field(10.0, gt=0)
    requeue_queued_after_s: float = Field(300.0, gt=0)
    # how long a write is retried while the database is unreachable (then the reaper decides)
    store_patience_s: float = Field(60.0, ge=0)
    # torch threads per worker process (one job at a time per process)
    torch_threads: int = Field(0, ge=0)
    # the CPU scheduling class of the job processes (the compute; the supervisor, its
    # heartbeats and claims keep the normal class): "idle" runs a job only on a core that
    # nothing else wants, so an API on the same machine never waits behind a hypergradient
    # step; under sustained load such a job may starve into the stall timeout (stall_s)
    job_sched: Literal["normal", "batch", "idle"] = "normal"
    # real data sets (MNIST, Omniglot) for the problems that read them
    data_dir: Path | None = Field(None, validation_alias=AliasChoices("BILEVEL_DATA_DIR"))
    # a ceiling on every job's running time (summed over attempts); a spec's time_limit_s
    # can only lower it. None: no ceiling.
    max_job_time_s: float | None = Field(None, gt=0)
    # the watchdog (worker.watchdog): a job whose process completes no hyper-iteration for
    # this long is killed and fails (IterationStalled); a spec's stall_s replaces it
    stall_s: float = Field(1800.0, ge=1, le=86_400)
    # before that kill (and one for a time limit or an unheeded cancel), how long the job's
    # process may take to write the trace points it holds and exit (worker.last_flush)
    flush_grace_s: float = Field(5.0, ge=0, le=300)
    # uploaded data sets fetched from the store are kept here, by sha256, verified on every
    # read, the least recently used dropped beyond dataset_cache_bytes (BILEVEL_DATASET_CACHE_BYTES)
    dataset_cache_dir: Path | None = None
    dataset_cache_bytes: int = Field(4 << 30, ge=0)
    # torch.compile's on-disk caches (TORCHINDUCTOR_CACHE_DIR), shared by this worker's jobs
    # with hypergradient.compile: a job whose kernels an earlier one built skips most of the
    # compilation. None: ``compile-cache`` under the state directory.
    compile_cache_dir: Path | None = None
    # a new job process compiles a toy problem before its first job, so that Inductor's
    # start-up (about 4 s, 10-25 s with a cold cache) is paid there, not by a compiled job;
    # false: the warm-up runs the toy eagerly (the test suite's many short-lived workers)
    compile_warm_up: bool = True
    # hypergradient.compile="auto" compiles when the compiled run plus the compile time is
    # at most the estimated eager run, with the speed-up and compile time measured here for
    # the same problem kind, method and shapes (compile-times.json in the compile cache), or
    # before that the median measured here for other shapes (the same kind and method first);
    # with no speed-up measured here at all, when the eager run is at least compile_payoff
    # times the compile time (compile_prior_s before any compile of the kind was timed);
    # when that says no for a key never measured, it compiles in a background child if the
    # eager run is at least the compile time (worker.compile_choice.BACKGROUND)
    compile_payoff: float = Field(default=10.0, gt=0)
    compile_prior_s: float = Field(default=30.0, gt=0)
    # a job whose estimated eager run is shorter never compiles in the background: it would
    # gain seconds at most, and a switch to compiled code mid-job changes the last bits of
    # what follows (a compiled hypergradient rounds differently), so a short job's trace
    # would differ between an attempt that switched and one that did not (a preempted or
    # killed job resumed elsewhere: a CI run's exact-resume check caught it on a 4 s job)
    compile_background_min_s: float = Field(default=20.0, ge=0)

    @property
    def resolved_dataset_cache_dir(self) -> Path:
        """``dataset_cache_dir``, or ``dataset-cache`` under the state directory."""
        if self.dataset_cache_dir is not None:
            return self.dataset_cache_dir.expanduser().resolve()
        return self.resolved_state_dir / "dataset-cache"

    @property
    def resolved_compile_cache_dir(self) -> Path:
        """``compile_cache_dir``, or ``compile-cache`` under the state directory."""
        if self.compile_cache_dir is not None:
            return self.compile_cache_dir.expanduser().resolve()
        return self.resolved_state_dir / "compile-cache"
