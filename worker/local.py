"""The embedded mode's executor: one thread that runs queued jobs, one at a time.

It implements the same ``send``/``ping`` as the Celery dispatcher and runs each job the way
a Celery worker does, in a job process under the watchdog (``worker.watchdog``): a job that
stops making progress is killed there and the next one runs in a fresh process. A periodic
reap requeues jobs whose lease expired and compacts traces past the retention. At start it
takes back the jobs a previous process left ``running`` (there is only one executor per store
in this mode) and queues every job still ``queued``. It beats as a worker named ``embedded``
(at its start, after each job and at each reap) so that an idle embedded server counts one
live worker (``bilevel_workers_alive``, the pool's estimated starts).
"""

from __future__ import annotations

import logging
import queue
import threading
import uuid

from sqlalchemy.orm import Session, sessionmaker

from jobs.status import QueueKind
from jobs.store import repo
from worker.job_process import OnRecord
from worker.notify import Notifier
from worker.retention import Retention
from worker.search import advance_after, advance_all
from worker.settings import WorkerSettings
from worker.watchdog import Supervisor

__all__ = ["LocalExecutor"]

log = logging.getLogger(__name__)
_STOP = object()
NAME = "embedded"


class LocalExecutor:
    """Runs jobs one at a time from a background thread, each in the job process.

    Args:
        sessions: the store's session factory.
        settings: the worker's settings.
        on_record: called in the job process with every trace record of every job (tests
            inject faults with it; it must pickle).
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: WorkerSettings,
        *,
        on_record: OnRecord | None = None,
    ):
        self.sessions, self.settings = sessions, settings
        self.on_record = on_record
        # a job whose process died is requeued at once and comes back through send
        self.supervisor = Supervisor(sessions, settings, worker=NAME, requeue=self.send)
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="bilevel-executor")
        self.current: uuid.UUID | None = None
        self._notifier = Notifier(sessions, settings)  # webhooks, off the request path
        self._retention = Retention(sessions, settings)  # traces past the retention

    def start(self) -> LocalExecutor:
        self._beat()
        with self.sessions.begin() as s:
            # a previous process died holding these: expire their leases so reap requeues them
            repo.expire_running_leases(s)
        with self.sessions.begin() as s:
            repo.reap(s)
        with self.sessions() as s:
            ids = repo.queued_job_ids(s)
        for job_id in ids:
            self._queue.put(job_id)
        self._thread.start()
        self._notifier.start()
        return self

    def send(self, job_id: uuid.UUID, queue: str = QueueKind.CPU) -> None:
        self._queue.put(job_id)

    def ping(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the current job (a running job is left to resume on next start)."""
        self._queue.put(_STOP)
        self._notifier.stop(timeout)
        if self._thread.is_alive():
            self._thread.join(timeout)
        if not self._thread.is_alive():  # else a job still runs there, and its process
            self.supervisor.close()
            try:
                with self.sessions.begin() as s:
                    repo.drop_worker(s, NAME)
            except Exception:  # the store may be gone already; the row then just ages out
                log.warning("could not drop the embedded worker's row", exc_info=True)

    close = stop

    def _loop(self) -> None:
        self.supervisor.start()  # the job process imports torch and warms up meanwhile
        while True:
            try:
                item = self._queue.get(timeout=self.settings.reap_every_s)
            except queue.Empty:
                self._beat()
                self._reap()
                continue
            if item is _STOP:
                return
            self.current = item
            try:
                self.supervisor.execute(item, on_record=self.on_record)
                # a search member ended: its study asks for the next ones
                advance_after(self.sessions, uuid.UUID(str(item)), self.send,
                              self.settings.max_attempts)  # fmt: skip
            except Exception:
                log.exception("job %s crashed the executor's attempt", item)
            finally:
                self.current = None
                self._beat()

    def _beat(self) -> None:
        # idle or between jobs; a running job's lease already counts it alive
        try:
            with self.sessions.begin() as s:
                repo.beat_worker(s, NAME, QueueKind.CPU)
        except Exception:
            log.warning("worker beat failed", exc_info=True)

    def _reap(self) -> None:
        try:
            with self.sessions.begin() as s:
                jobs = repo.reap(s, requeue_queued_after_s=self.settings.requeue_queued_after_s)
            for job in jobs:
                self._queue.put(job.id)
            advance_all(self.sessions, self.send, self.settings.max_attempts)
            self._retention.maybe_pass()
        except Exception:
            log.warning("reap failed", exc_info=True)
