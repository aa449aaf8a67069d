"""Settings every service shares: where the store is, where the broker is.

``api.settings.ApiSettings`` and ``worker.settings.WorkerSettings`` extend this class; each
service reads its settings once at start and passes them on. With neither ``DATABASE_URL``
nor a broker URL set, the service is *embedded*: SQLite under ``state_dir`` and an
in-process executor.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from jobs.store.db import normalize_url, sqlite_url

__all__ = ["StoreSettings"]


class StoreSettings(BaseSettings):
    """Where the store and the broker are, and the limits every process must agree on.

    Read from ``BILEVEL_*`` environment variables (``DATABASE_URL`` and ``BROKER_URL`` also
    without the prefix).
    """

    model_config = SettingsConfigDict(env_prefix="BILEVEL_", extra="ignore")

    database_url: str | None = Field(
        None, validation_alias=AliasChoices("DATABASE_URL", "BILEVEL_DATABASE_URL")
    )
    broker_url: str | None = Field(
        None,
        validation_alias=AliasChoices("BROKER_URL", "CELERY_BROKER_URL", "BILEVEL_BROKER_URL"),
    )
    state_dir: Path = Field(
        Path("~/.local/share/bilevel"),
        validation_alias=AliasChoices("BILEVEL_STATE_DIR", "STATE_DIR"),
    )
    # PostgreSQL connections per process: kept open, and opened beyond those under load
    # (closed again when returned). An API process holds at most db_pool_size +
    # db_max_overflow; a worker's Celery process and its job process each at most
    # worker_db_pool_size + worker_db_max_overflow. The sum over every process must fit the
    # server's max_connections (docs/guides/pool-at-scale.md has the arithmetic).
    db_pool_size: int = Field(5, ge=1, le=100)
    db_max_overflow: int = Field(10, ge=0, le=100)
    worker_db_pool_size: int = Field(2, ge=1, le=20)
    worker_db_max_overflow: int = Field(10, ge=0, le=20)
    # false behind PgBouncer (< 1.21) in transaction mode: psycopg then prepares no statement
    # on the server (a prepared statement lives in one server connection, a transaction-mode
    # pooler hands the next transaction another)
    db_prepared_statements: bool = True
    # Celery queues are "<prefix>.cpu" and "<prefix>.gpu"; a prefix isolates deployments.
    queue_prefix: str = "bilevel"
    lease_s: float = Field(30.0, gt=0)
    max_attempts: int = Field(3, ge=1, le=100)
    # the most jobs of one team running at once: the API refuses a submit at the limit, and a
    # worker leaves a job queued rather than claim it past the limit (the pool's fair share)
    max_running_jobs: int = Field(20, ge=1)
    # fair share (jobs.fairshare), each team's defaults until an admin sets its own: the
    # weight, and the running limit on GPU workers (None: max_running_jobs, as on CPU ones)
    default_team_weight: float = Field(1.0, gt=0, le=1e6)
    max_running_gpu_jobs: int | None = Field(None, ge=1)
    # stop a running job of an over-share team at its next checkpoint (it is requeued and
    # resumes exactly) when a team below its share waits and no worker is idle; only jobs
    # whose attempt has run at least preempt_min_run_s
    preemption: bool = True
    preempt_min_run_s: float = Field(60.0, ge=0)
    # API keys are stored as HMAC-SHA256 under this secret (see jobs.keys.load_key_secret)
    key_secret: SecretStr | None = None
    key_secret_file: Path | None = None
    # during a rotation, the secret being retired: its keys still verify, and are rehashed
    # under key_secret on their next use (see jobs.keys.load_previous_key_secret)
    key_secret_previous: SecretStr | None = None
    key_secret_previous_file: Path | None = None
    # webhooks (jobs.webhooks): the only networks or host names a webhook URL may resolve to
    # (CIDRs or names; empty: no webhook at all); each POST's timeout; attempts before a
    # delivery is recorded failed, the first retry's delay (doubling after each failure)
    webhook_allow: list[str] = Field(default_factory=list)
    webhook_timeout_s: float = Field(5.0, gt=0, le=60)
    webhook_max_attempts: int = Field(5, ge=1, le=50)
    webhook_backoff_s: float = Field(5.0, ge=0, le=3600)
    # how often a worker (or the embedded executor) looks for events to send
    webhook_poll_s: float = Field(2.0, gt=0, le=3600)
    # trace retention (jobs.store.repo.trace_compaction): the full-resolution points of a job
    # finished longer ago than this are compacted into its per-64-iteration rollups, which
    # the trace endpoint then serves (X-Trace-Resolution: block). None: kept forever. The
    # workers' reaper compacts every trace_compact_every_s, trace_compact_batch jobs per
    # transaction, at most trace_compact_max_s in one pass; ``bilevel traces compact`` now.
    trace_retention_days: float | None = Field(None, gt=0)
    trace_compact_every_s: float = Field(300.0, gt=0)
    trace_compact_batch: int = Field(20, ge=1, le=10_000)
    trace_compact_max_s: float = Field(10.0, gt=0)

    @property
    def embedded(self) -> bool:
        """No ``DATABASE_URL``: SQLite under ``state_dir`` and an in-process executor."""
        return self.database_url is None

    @property
    def store_url(self) -> str:
        """The SQLAlchemy URL: ``DATABASE_URL`` (psycopg 3), else SQLite under the state dir."""
        if self.database_url:
            return normalize_url(self.database_url)
        return sqlite_url(self.resolved_state_dir)

    @property
    def resolved_state_dir(self) -> Path:
        """``state_dir`` with ``~`` expanded, absolute."""
        return self.state_dir.expanduser().resolve()

    def queue_name(self, kind: str) -> str:
        """The Celery queue of ``kind`` (``cpu`` or ``gpu``) in this deployment."""
        return f"{self.queue_prefix}.{kind}"
