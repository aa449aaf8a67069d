"""Celery tasks, thin: take a job id, have the supervisor run it, report.

Jobs run in a job process of this worker's (``worker.watchdog``), which a job that stops
making progress loses: this process never imports torch.

The engine is created lazily in the worker process. Every worker also runs a reaper thread
(``worker_ready``): it records the worker's heartbeat in the pool, asks over-share jobs to
yield to starved teams (preemption), requeues jobs whose lease expired, resends stale
queued jobs, steps search studies (``worker.search``) and compacts traces past the
retention (``worker.retention``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid

from celery.signals import worker_ready, worker_shutdown, worker_shutting_down
from sqlalchemy.exc import DBAPIError

from jobs.dispatch import RUN_TASK
from jobs.status import QueueKind
from jobs.store import repo
from jobs.store.db import make_engine, make_session_factory
from worker.app import app, settings
from worker.attempt import worker_name
from worker.notify import Notifier
from worker.outcome import Outcome
from worker.retention import Retention
from worker.search import advance_after, advance_all
from worker.shutdown import request_shutdown
from worker.watchdog import Supervisor

__all__ = ["reap", "run_job", "supervisor"]

log = logging.getLogger(__name__)
_sessions = None
_pid = None
_stop = threading.Event()
_notifier: Notifier | None = None
_supervisor: Supervisor | None = None


def sessions():
    """This process's session factory (made after any fork)."""
    global _sessions, _pid
    if _sessions is None or _pid != os.getpid():
        engine = make_engine(settings.store_url, pool_size=settings.worker_db_pool_size,
                             max_overflow=settings.worker_db_max_overflow,
                             prepared=settings.db_prepared_statements)  # fmt: skip
        _sessions = make_session_factory(engine)
        _pid = os.getpid()
    return _sessions


def supervisor() -> Supervisor:
    """This process's supervisor of its job process (made after any fork)."""
    global _supervisor
    if _supervisor is None or _pid != os.getpid():
        # a job whose process died is requeued at once and sent as the reaper sends
        _supervisor = Supervisor(sessions(), settings, requeue=_send)
    return _supervisor


@app.task(name=RUN_TASK, ignore_result=True)
def run_job(job_id: str) -> Outcome:
    """Run one job to its end (a duplicate delivery returns ``Outcome.SKIPPED``)."""
    outcome = supervisor().execute(job_id)
    if outcome.claimed:
        _advance_search(job_id)
    if outcome.claimed:
        # a job stopped (or went back to the queue): a queued job of its kind may be left
        # without a message (claimed in another's turn, or held at a team's limit)
        _send_next(job_id)
    return outcome


def _advance_search(job_id: str) -> None:
    """A search member stopped: its study asks for the next ones (``worker.search``)."""
    try:
        advance_after(sessions(), uuid.UUID(job_id), _send, settings.max_attempts)
    except Exception:  # the reaper's pass takes the step
        log.warning("could not advance the study of job %s", job_id, exc_info=True)


def _send_next(job_id: str) -> None:
    """Wake a worker of ``job_id``'s kind if jobs of it are queued. Which job is claimed is
    the claim's choice; a message too many claims nothing."""
    try:
        with sessions()() as s:
            job = repo.get_job(s, None, uuid.UUID(job_id))
            kind = job.queue if job is not None else QueueKind.CPU
            queued = repo.queued_candidates(s, kind)
        if queued:
            run_job.apply_async(args=[str(queued[0].id)], queue=settings.queue_name(kind))
    except Exception:  # the reaper resends stale queued jobs anyway
        log.warning("could not wake a worker after job %s", job_id, exc_info=True)


def _send(job_id: uuid.UUID, queue: str) -> None:
    """Send ``job_id`` to a worker of its queue kind (a requeued job)."""
    run_job.apply_async(args=[str(job_id)], queue=settings.queue_name(queue))


@app.task(name="worker.tasks.reap", ignore_result=True)
def reap(expire_leases: bool = True) -> int:
    """Requeue jobs whose lease expired; resend jobs queued for too long."""
    empty = [kind for kind in QueueKind if _broker_queue_empty(settings.queue_name(kind))]
    with sessions().begin() as s:
        jobs = repo.reap(
            s,
            requeue_queued_after_s=settings.requeue_queued_after_s,
            stale_queues=empty,
            expire_leases=expire_leases,
        )
        sends = [(j.id, j.queue) for j in jobs]
    for job_id, queue in sends:
        _send(job_id, queue)
    if sends:
        log.info("reaper resent %d job(s)", len(sends))
    # a search's step lost to a crash, or owed for a member cancelled while queued
    added = advance_all(sessions(), _send, settings.max_attempts)
    return len(sends) + added


def _broker_queue_empty(name: str) -> bool:
    """Whether Redis holds no message for queue ``name`` (other brokers: assume so)."""
    try:
        with app.connection_for_read() as conn:
            client = getattr(conn.default_channel, "client", None)
            return client is None or client.llen(name) == 0
    except Exception:
        return True


def _pool_pass(kinds: list[str]) -> None:
    """Tell the store this worker is alive; ask over-share jobs to yield to starved teams."""
    policy = repo.Policy.of(settings)
    with sessions().begin() as s:
        for kind in kinds:
            repo.beat_worker(s, worker_name(), kind)
    for kind in kinds:
        with sessions().begin() as s:
            # one decision a period for the pool, the live workers taking turns
            if not repo.takes_pass_turn(s, kind, worker_name(), policy, settings.reap_every_s,
                                        at=time.time()):  # fmt: skip
                continue
            victims = repo.request_preemptions(s, kind, policy)
        if victims:
            log.info("asked %s to yield to a team below its share", ", ".join(map(str, victims)))


def _reaper_loop(kinds: list[str]) -> None:
    # While the store is down no heartbeat renews a lease, so when it comes back every
    # running job looks lost. Its worker is most likely still computing it and retrying its
    # writes: give it one lease to renew before taking the job (and an attempt) away.
    grace_until = 0.0
    retention = Retention(sessions(), settings)
    while True:
        try:
            _pool_pass(kinds)
        except Exception:
            log.warning("pool pass failed", exc_info=True)
        if _stop.wait(settings.reap_every_s):
            return
        try:
            reap(expire_leases=time.monotonic() >= grace_until)
        except DBAPIError:
            grace_until = time.monotonic() + settings.lease_s
            log.warning("reaper pass failed: store unavailable", exc_info=True)
        except Exception:
            log.warning("reaper pass failed", exc_info=True)
        try:
            retention.maybe_pass()
        except Exception:  # the next pass takes what this one left
            log.warning("trace compaction pass failed", exc_info=True)


def _consumed_kinds() -> list[str]:
    """The queue kinds (``cpu``, ``gpu``) this worker consumes (its ``-Q``)."""
    prefix = f"{settings.queue_prefix}."
    names = list(getattr(app.amqp.queues, "consume_from", None) or app.amqp.queues)
    kinds = sorted({n[len(prefix) :] for n in names if n.startswith(prefix)})
    return kinds or [QueueKind.CPU]


@worker_ready.connect
def _start_reaper(**_) -> None:
    # the job process imports torch and warms it up before this worker says it is ready,
    # so that the first job runs without that delay
    try:
        supervisor().start(wait=True)
    except RuntimeError:  # the first job starts another
        log.warning("the job process did not start", exc_info=True)
    kinds = _consumed_kinds()
    log.info("in the pool as a worker of %s", ", ".join(kinds))
    threading.Thread(target=_reaper_loop, args=(kinds,), daemon=True, name="bilevel-reaper").start()
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
    try:  # leave the pool's view now rather than when the beat goes stale
        with sessions().begin() as s:
            repo.drop_worker(s, worker_name())
    except Exception:
        log.warning("could not leave the pool's worker list", exc_info=True)
    if _notifier is not None:
        _notifier.stop()
    if _supervisor is not None:
        _supervisor.close()
