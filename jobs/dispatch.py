"""Sending job ids to whatever runs them: Celery over Redis, or the embedded executor.

The API calls ``send`` only after the job's row is committed, and by task *name*, so the API
never imports the worker (nor torch). A lost message is harmless: the reaper sends queued
jobs again after a while, and a duplicate delivery claims nothing.
"""

from __future__ import annotations

import uuid
from typing import Protocol

__all__ = ["RUN_TASK", "CeleryDispatcher", "Dispatcher"]

RUN_TASK = "worker.tasks.run_job"


class Dispatcher(Protocol):
    def send(self, job_id: uuid.UUID, queue: str) -> None: ...

    def ping(self) -> bool: ...


class CeleryDispatcher:
    """Publishes ``worker.tasks.run_job(job_id)`` on ``<prefix>.<queue>``."""

    def __init__(self, broker_url: str, queue_prefix: str = "bilevel"):
        from celery import Celery

        self.prefix = queue_prefix
        self.app = Celery("bilevel-client", broker=broker_url, set_as_current=False)
        self.app.conf.broker_connection_retry_on_startup = True
        self.app.conf.broker_transport_options = {"max_retries": 2, "interval_start": 0.1}

    def send(self, job_id: uuid.UUID, queue: str) -> None:
        self.app.send_task(
            RUN_TASK, args=[str(job_id)], queue=f"{self.prefix}.{queue}", ignore_result=True
        )

    def ping(self) -> bool:
        try:
            with self.app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=2)
            return True
        except Exception:
            return False

    def close(self) -> None:
        self.app.close()
