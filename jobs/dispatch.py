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
    """How the API wakes a worker for a job it has committed (the broker is only the transport)."""

    def send(self, job_id: uuid.UUID, queue: str) -> None:
        """Ask a worker of ``queue`` (``cpu`` or ``gpu``) to run ``job_id``; the row says what."""
        ...

    def ping(self) -> bool:
        """Whether the transport answers (``/readyz``)."""
        ...


class CeleryDispatcher:
    """Publishes ``worker.tasks.run_job(job_id)`` on ``<prefix>.<queue>``."""

    def __init__(self, broker_url: str, queue_prefix: str = "bilevel"):
        from celery import Celery

        self.prefix = queue_prefix
        self.app = Celery("bilevel-client", broker=broker_url, set_as_current=False)
        self.app.conf.broker_connection_retry_on_startup = True
        self.app.conf.broker_transport_options = {"max_retries": 2, "interval_start": 0.1}

    def send(self, job_id: uuid.UUID, queue: str) -> None:
        """Publish the task message for ``job_id`` on ``<prefix>.<queue>``."""
        self.app.send_task(
            RUN_TASK, args=[str(job_id)], queue=f"{self.prefix}.{queue}", ignore_result=True
        )

    def ping(self) -> bool:
        """Whether the broker accepts a connection within about two seconds."""
        try:
            with self.app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=2)
            return True
        except Exception:
            return False

    def close(self) -> None:
        """Release the broker connections."""
        self.app.close()
