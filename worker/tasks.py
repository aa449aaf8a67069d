"""Celery tasks, thin: take a job id, call the runner, report.

The engine is created lazily in the worker process. Every worker also runs a reaper thread
(``worker_ready``): it requeues jobs whose lease expired and resends stale queued jobs.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid

from celery.signals import worker_ready, worker_shutdown, worker_shutting_down
from sqlalchemy.exc import DBAPIError

from jobs import repo
from jobs.db import make_engine, make_session_factory
from jobs.dispatch import RUN_TASK
from worker.app import app, settings
from worker.notify import Notifier
from worker.outcome import Outcome
from worker.shutdown import request_shutdown

__all__ = ["reap", "run_job"]

log = logging.getLogger(__name__)
_sessions = None
_pid = None
_stop = threading.Event()
_notifier: Notifier | None = None


def sessions():
    """This process's session factory (made after any fork)."""
    global _sessions, _pid
    if _sessions is None or _pid != os.getpid():
        _sessions = make_session_factory(make_engine(settings.store_url, pool_size=2))
        _pid = os.getpid()
    return _sessions


@app.task(name=RUN_TASK, ignore_result=True)
def run_job(job_id: str) -> Outcome:
    """Run one job to its end (a duplicate delivery returns ``Outcome.SKIPPED``)."""
    from worker import runner  # torch loads here, in the worker only

    if settings.torch_threads:
        import torch

        torch.set_num_threads(settings.torch_threads)
    outcome = runner.execute_job(sessions(), job_id, settings)
    if outcome is Outcome.RELEASED:
        # this worker is stopping: send the job on now rather than at the reaper's next pass
        with sessions()() as s:
            job = repo.get_job(s, None, uuid.UUID(job_id))
            queue = job.queue if job else "cpu"
        run_job.apply_async(args=[job_id], queue=settings.queue_name(queue))
    elif outcome.claimed:
        _send_teams_next(job_id)
    return outcome


def _send_teams_next(job_id: str) -> None:
    """A job of this team stopped running: send its oldest queued job, which may have been
    left queued at the team's running limit (its message is gone). A job that still has its
    message gets a duplicate, which claims nothing."""
    try:
        with sessions()() as s:
            job = repo.next_queued_of_team(s, uuid.UUID(job_id), settings.max_running_jobs)
            nxt = (str(job.id), job.queue) if job is not None else None
        if nxt is not None:
            run_job.apply_async(args=[nxt[0]], queue=settings.queue_name(nxt[1]))
    except Exception:  # the reaper resends stale queued jobs anyway
        log.warning("could not send the next queued job of %s's team", job_id, exc_info=True)


@app.task(name="worker.tasks.reap", ignore_result=True)
def reap(expire_leases: bool = True) -> int:
    """Requeue jobs whose lease expired; resend jobs queued for too long."""
    empty = [kind for kind in ("cpu", "gpu") if _broker_queue_empty(settings.queue_name(kind))]
    with sessions().begin() as s:
        jobs = repo.reap(
            s,
            requeue_queued_after_s=settings.requeue_queued_after_s,
            stale_queues=empty,
            expire_leases=expire_leases,
        )
        sends = [(j.id, j.queue) for j in jobs]
    for job_id, queue in sends:
        run_job.apply_async(args=[str(job_id)], queue=settings.queue_name(queue))
    if sends:
        log.info("reaper resent %d job(s)", len(sends))
    return len(sends)


def _broker_queue_empty(name: str) -> bool:
    """Whether Redis holds no message for queue ``name`` (other brokers: assume so)."""
    try:
        with app.connection_for_read() as conn:
            client = getattr(conn.default_channel, "client", None)
            return client is None or client.llen(name) == 0
    except Exception:
        return True


def _reaper_loop() -> None:
    # While the store is down no heartbeat renews a lease, so when it comes back every
    # running job looks lost. Its worker is most likely still computing it and retrying its
    # writes: give it one lease to renew before taking the job (and an attempt) away.
    grace_until = 0.0
    while not _stop.wait(settings.reap_every_s):
        try:
            reap(expire_leases=time.monotonic() >= grace_until)
        except DBAPIError:
            grace_until = time.monotonic() + settings.lease_s
            log.warning("reaper pass failed: store unavailable", exc_info=True)
        except Exception:
            log.warning("reaper pass failed", exc_info=True)


@worker_ready.connect
def _start_reaper(**_) -> None:
    # import torch and warm it up now, so the first job runs without that delay
    from worker import runner

    runner.warm_up()
    threading.Thread(target=_reaper_loop, daemon=True, name="bilevel-reaper").start()
    global _notifier
    _notifier = Notifier(sessions(), settings).start()  # webhooks: worker.notify


@worker_shutting_down.connect
def _preempt(**_) -> None:
    # SIGTERM (warm shutdown): the running job checkpoints and is released, so that a
    # deploy does not wait hours for it nor lose it to the SIGKILL that follows a timeout
    request_shutdown()


@worker_shutdown.connect
def _stop_reaper(**_) -> None:
    _stop.set()
    if _notifier is not None:
        _notifier.stop()
