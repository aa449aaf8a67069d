"""The Celery application: ``celery -A worker.app worker --pool solo -Q bilevel.cpu``.

Delivery is *at most once* from Redis (early ack) and *at least once* overall through the
store: with ``acks_late`` a task running longer than Redis's ``visibility_timeout`` is
delivered again while it still runs, and hour-long jobs are normal here; with early ack a
killed worker's message is gone, so the reaper (a thread in every worker, or the ``reap``
task on beat) requeues jobs whose lease expired, and resends jobs left queued too long.
A duplicate delivery claims nothing (conditional update), so resending is always safe.

One job at a time per worker (``--pool solo``, concurrency 1), run in a job process that
the worker spawns and watches (``worker.watchdog``): the Celery process never imports torch,
and nothing forks after CUDA is initialised.
"""

from __future__ import annotations

from celery import Celery

from jobs.status import QueueKind
from worker.settings import WorkerSettings

__all__ = ["app", "create_celery", "settings"]


def create_celery(settings: WorkerSettings) -> Celery:
    celery = Celery("bilevel", broker=settings.broker_url or "redis://127.0.0.1:6379/0")
    celery.conf.update(
        task_acks_late=False,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_default_queue=settings.queue_name(QueueKind.CPU),
        broker_connection_retry_on_startup=True,
        # only unacked (prefetched) messages wait for this; running jobs are acked already
        broker_transport_options={"visibility_timeout": 3600},
        worker_hijack_root_logger=False,
        beat_schedule={
            "reap": {"task": "worker.tasks.reap", "schedule": settings.reap_every_s},
        },
    )
    celery.conf.include = ["worker.tasks"]
    return celery


settings = WorkerSettings()
app = create_celery(settings)
