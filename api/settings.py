"""The API's settings (environment ``BILEVEL_*``, ``DATABASE_URL``, ``BROKER_URL``).

The protective limits, each with the variable that sets it:

- ``BILEVEL_MAX_BODY_BYTES``: the largest request body (413 beyond it);
- ``BILEVEL_RATE_LIMIT_PER_S`` and ``BILEVEL_RATE_LIMIT_BURST``: each API key's token bucket
  (429 with ``Retry-After`` when empty; a rate of 0 turns the limit off);
- ``BILEVEL_MAX_QUEUED_JOBS`` and ``BILEVEL_MAX_RUNNING_JOBS``: per team, checked at submit
  (429 ``quota-exceeded``); the workers also hold the running limit when they claim;
- ``BILEVEL_MAX_INNER_STEPS`` and ``BILEVEL_MAX_GRAPH_BYTES``: each spec's compute budget
  (422 naming the field; see ``jobs.specs.budget``);
- ``BILEVEL_MAX_UPLOAD_BYTES`` and ``BILEVEL_DATASET_QUOTA_BYTES``: one data set file, and a
  team's data sets in all (413 naming the setting);
- ``BILEVEL_AUTH_FAILURE_LIMIT`` and ``BILEVEL_AUTH_FAILURE_WINDOW_S``: failed authentications
  per client address in a window, after which that address gets 429 with ``Retry-After``
  until the window ends (0 turns it off; counted in Redis across every API process in the
  distributed mode, see ``api.authfailures``);
- ``BILEVEL_KEY_CACHE_TTL_S``: how long an API process trusts a key it has verified without
  asking the store again, and so the longest a key revoked elsewhere (another API process,
  ``bilevel keys revoke``) keeps working (0: ask every time; see ``jobs.keys.KeyCache``);
- ``BILEVEL_METRICS_ACCESS``: who may read ``/metrics`` (it names every team): ``operator``
  (the default: the pool operator's key), ``token`` (``BILEVEL_METRICS_TOKEN`` as the Bearer
  token, for a scraper that holds no API key) or ``private`` (no key, from loopback and
  private addresses only); see ``api.routes.metrics``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from jobs.settings import StoreSettings
from jobs.specs.budget import BudgetLimits

__all__ = ["ApiSettings"]


class ApiSettings(StoreSettings):
    """The API process's settings: the store's (``StoreSettings``) and the limits above."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    # the most points one trace response may hold, and the default
    max_trace_points: int = Field(100_000, ge=10)
    default_trace_points: int = Field(5_000, ge=10)
    # a spec is a few hundred bytes: 1 MiB leaves room without letting a client fill memory
    max_body_bytes: int = Field(1 << 20, ge=1024)
    # per API key; a dashboard polls a job and its trace about twice a second per tab
    rate_limit_per_s: float = Field(25.0, ge=0)
    rate_limit_burst: int = Field(100, ge=1)
    # per client address: wrong keys before a 429, and the window they are counted in
    auth_failure_limit: int = Field(20, ge=0)
    auth_failure_window_s: float = Field(60.0, gt=0, le=86_400)
    # per team, checked at submit (max_running_jobs, in StoreSettings, also by the workers
    # when they claim); Retry-After of the 429 that answers an over-quota submit
    max_queued_jobs: int = Field(100, ge=1)
    # the most jobs one study's grid may expand to (422 beyond it)
    max_study_members: int = Field(64, ge=1)
    quota_retry_after_s: int = Field(30, ge=1)
    # per spec: inner.steps x outer.iterations, and the estimated memory of the stored graph
    max_inner_steps: int = Field(200_000_000, ge=1)
    max_graph_bytes: int = Field(8 << 30, ge=1)
    # a poller's key costs no query on most requests; revocation waits at most this long
    key_cache_ttl_s: float = Field(5.0, ge=0, le=300)
    key_cache_size: int = Field(1024, ge=1)
    # GET /metrics for Prometheus; it names every team, so only the operator reads it unless
    # the scraper gets a token of its own or sits on a private network
    metrics: bool = True
    # each process reads the store's aggregates for /metrics at most once per this many
    # seconds (the scrape interval), and the teams' queued counts and shares that /v1/pool
    # shows once per pool_cache_s; both in the background, answering from the last reading
    metrics_cache_s: float = Field(10.0, ge=0, le=3600)
    pool_cache_s: float = Field(2.0, ge=0, le=3600)
    metrics_access: Literal["operator", "token", "private"] = "operator"
    metrics_token: SecretStr | None = None
    # data set uploads (POST /v1/datasets): their own body limit, far above max_body_bytes,
    # and each team's total stored bytes; the upload is spooled to upload_dir (the system's
    # temporary directory by default) while it is hashed and validated
    max_upload_bytes: int = Field(2 << 30, ge=1024)
    dataset_quota_bytes: int = Field(10 << 30, ge=0)
    upload_dir: Path | None = None

    @model_validator(mode="after")
    def _metrics_token_given(self) -> ApiSettings:
        token = self.metrics_token.get_secret_value() if self.metrics_token else ""
        if self.metrics_access == "token" and len(token) < 32:
            raise ValueError(
                "metrics_access 'token' needs BILEVEL_METRICS_TOKEN of at least 32 characters, "
                f"got {len(token)}"
            )
        return self

    @property
    def budget(self) -> BudgetLimits:
        """The compute budget a submitted spec must fit (``jobs.specs.budget.check_budget``)."""
        return BudgetLimits(max_inner_steps=self.max_inner_steps,
                            max_graph_bytes=self.max_graph_bytes)  # fmt: skip
