"""Every query and state transition of the job store, shared by the API, the workers and the CLI.

One module per concern; this package re-exports their public names so callers write
``repo.create_job(...)``:

- :mod:`jobs.repo.teams`: teams, API keys, and the per-team counts the quotas check;
- :mod:`jobs.repo.submissions`: submitting, reading, listing and cancelling jobs;
- :mod:`jobs.repo.lifecycle`: a worker's claim, heartbeat, finish and release, and the reaper;
- :mod:`jobs.repo.trace_writes` and :mod:`jobs.repo.trace_reads`: a job's convergence trace;
- :mod:`jobs.repo.artifacts`: learned hyperparameters and checkpoints;
- :mod:`jobs.repo.studies`: studies (a grid of jobs as one object);
- :mod:`jobs.repo.webhooks`: webhooks and the outbox of their deliveries;
- :mod:`jobs.repo.health`: the readiness probe's round trip.
"""

from jobs.models import utcnow
from jobs.repo.artifacts import load_artifact, save_artifact
from jobs.repo.health import ping_store
from jobs.repo.lifecycle import (
    Claim,
    LeaseState,
    at_running_limit,
    claim_job,
    expire_running_leases,
    finish_job,
    heartbeat,
    next_queued_of_team,
    queued_job_ids,
    reap,
    release_job,
)
from jobs.repo.studies import (
    cancel_study,
    create_study,
    get_study,
    list_studies,
    study_members,
    study_status_counts,
)
from jobs.repo.submissions import (
    IdempotencyConflict,
    cancel_job,
    create_job,
    decode_cursor,
    find_idempotent,
    get_job,
    list_jobs,
)
from jobs.repo.teams import (
    Principal,
    TeamRef,
    any_team_exists,
    authenticate,
    count_active_jobs,
    create_api_key,
    ensure_team,
    get_api_key,
    list_api_keys,
    lock_team,
    revoke_api_key,
    set_api_key_scope,
    verify_key,
)
from jobs.repo.trace_reads import (
    best_outer_loss,
    last_outer_loss,
    trace_columns,
    trace_span,
    trace_version,
)
from jobs.repo.trace_writes import truncate_trace, write_trace
from jobs.repo.webhooks import (
    DeliveryStatus,
    DueDelivery,
    claim_due,
    create_webhook,
    enqueue_events,
    get_webhook,
    list_deliveries,
    list_webhooks,
    record_attempt,
    revoke_webhook,
)

__all__ = [
    "Claim",
    "DeliveryStatus",
    "DueDelivery",
    "IdempotencyConflict",
    "LeaseState",
    "Principal",
    "TeamRef",
    "any_team_exists",
    "at_running_limit",
    "authenticate",
    "best_outer_loss",
    "cancel_job",
    "cancel_study",
    "claim_due",
    "claim_job",
    "count_active_jobs",
    "create_api_key",
    "create_job",
    "create_study",
    "create_webhook",
    "decode_cursor",
    "enqueue_events",
    "ensure_team",
    "expire_running_leases",
    "find_idempotent",
    "finish_job",
    "get_api_key",
    "get_job",
    "get_study",
    "get_webhook",
    "heartbeat",
    "last_outer_loss",
    "list_api_keys",
    "list_deliveries",
    "list_jobs",
    "list_studies",
    "list_webhooks",
    "load_artifact",
    "lock_team",
    "next_queued_of_team",
    "ping_store",
    "queued_job_ids",
    "reap",
    "record_attempt",
    "release_job",
    "revoke_api_key",
    "revoke_webhook",
    "save_artifact",
    "set_api_key_scope",
    "study_members",
    "study_status_counts",
    "trace_columns",
    "trace_span",
    "trace_version",
    "truncate_trace",
    "utcnow",
    "verify_key",
    "write_trace",
]
