"""Every query and state transition of the job store, shared by the API, the workers and the CLI.

One module per concern; this package re-exports their public names so callers write
``repo.create_job(...)``:

- :mod:`jobs.store.repo.teams`: teams, API keys, and the per-team counts the quotas check;
- :mod:`jobs.store.repo.submissions`: submitting, reading, listing and cancelling jobs;
- :mod:`jobs.store.repo.idempotency`: ``Idempotency-Key`` replays of jobs, studies, data sets;
- :mod:`jobs.store.repo.lifecycle`: a worker's claim, heartbeat, finish and release, and the reaper;
- :mod:`jobs.store.repo.job_cycle`: a heartbeat with its trace batch, a finish with its last one;
- :mod:`jobs.store.repo.scheduling`: the fair-share claim, preemption requests, worker heartbeats;
- :mod:`jobs.store.repo.pool`: the pool's view (teams' shares, workers, queue positions), weights;
- :mod:`jobs.store.repo.pool_metrics`: the aggregates ``/metrics`` reports;
- :mod:`jobs.store.repo.trace_writes` and :mod:`jobs.store.repo.trace_reads`: a job's
  convergence trace;
- :mod:`jobs.store.repo.artifacts`: learned hyperparameters and checkpoints;
- :mod:`jobs.store.repo.datasets`: a team's uploaded data sets, their bytes in chunks;
- :mod:`jobs.store.repo.studies`: studies (a grid of jobs as one object);
- :mod:`jobs.store.repo.webhooks`: webhooks and the outbox of their deliveries;
- :mod:`jobs.store.repo.health`: the readiness probe's round trip.
"""

from jobs.store.models import utcnow
from jobs.store.repo.artifacts import load_artifact, save_artifact
from jobs.store.repo.audit import OPERATOR_AGENT, Actor, list_events, owning_team, record_event
from jobs.store.repo.claims import claim_next
from jobs.store.repo.datasets import (
    dataset_bytes_used,
    dataset_jobs,
    dataset_lookup,
    delete_dataset,
    get_dataset,
    jobs_using_dataset,
    list_datasets,
    read_dataset_chunks,
    store_dataset,
)
from jobs.store.repo.health import ping_store
from jobs.store.repo.idempotency import IdempotencyConflict, find_keyed, request_digest
from jobs.store.repo.job_cycle import finish_with_trace, heartbeat_with_trace
from jobs.store.repo.lifecycle import (
    Claim,
    LeaseState,
    cancel_is_requested,
    claim_job,
    expire_running_leases,
    finish_job,
    heartbeat,
    queued_job_ids,
    reap,
    release_job,
    requeue_crashed,
)
from jobs.store.repo.pages import decode_cursor
from jobs.store.repo.pool import (
    PoolView,
    list_teams,
    pool_answers,
    pool_state_age,
    pool_view,
    refresh_pool_state,
    set_team_policy,
    team_by_name,
)
from jobs.store.repo.pool_metrics import (
    Histogram,
    durations,
    job_counts,
    preemption_count,
    trace_point_count,
)
from jobs.store.repo.scheduling import (
    Policy,
    beat_worker,
    drop_worker,
    live_workers,
    queued_candidates,
    request_preemptions,
    running_jobs,
    takes_pass_turn,
    team_loads,
)
from jobs.store.repo.studies import (
    active_searches,
    add_trial,
    cancel_study,
    create_study,
    get_study,
    get_study_any,
    list_studies,
    lock_study,
    member_traces,
    study_members,
    study_of_job,
    study_status_counts,
    warm_sources,
)
from jobs.store.repo.submissions import (
    cancel_job,
    create_job,
    find_idempotent,
    get_job,
    job_of_view_row,
    job_view_row,
    list_jobs,
)
from jobs.store.repo.teams import (
    LastAdminKey,
    Principal,
    TeamRef,
    any_team_exists,
    authenticate,
    count_active_jobs,
    count_admin_keys,
    create_api_key,
    ensure_team,
    get_api_key,
    list_api_keys,
    lock_team,
    revoke_api_key,
    set_api_key_scope,
    verify_key,
)
from jobs.store.repo.trace_compaction import CompactionPass, compact_due, compact_job
from jobs.store.repo.trace_json import trace_json
from jobs.store.repo.trace_reads import (
    TracePoll,
    best_outer_loss,
    estimated_trace_points,
    last_outer_loss,
    trace_columns,
    trace_poll,
    trace_span,
    trace_span_of,
    trace_version,
)
from jobs.store.repo.trace_writes import (
    checkpoint_iteration,
    rewind_trace,
    stored_iteration,
    truncate_trace,
    write_trace,
)
from jobs.store.repo.webhooks import (
    DueDelivery,
    claim_due,
    create_webhook,
    enqueue_events,
    get_webhook,
    list_deliveries,
    list_webhooks,
    next_due_at,
    record_attempt,
    reseal_webhook_secrets,
    revoke_webhook,
)

__all__ = [
    "OPERATOR_AGENT",
    "Actor",
    "Claim",
    "CompactionPass",
    "DueDelivery",
    "Histogram",
    "IdempotencyConflict",
    "LastAdminKey",
    "LeaseState",
    "Policy",
    "PoolView",
    "Principal",
    "TeamRef",
    "TracePoll",
    "active_searches",
    "add_trial",
    "any_team_exists",
    "authenticate",
    "beat_worker",
    "best_outer_loss",
    "cancel_is_requested",
    "cancel_job",
    "cancel_study",
    "checkpoint_iteration",
    "claim_due",
    "claim_job",
    "claim_next",
    "compact_due",
    "compact_job",
    "count_active_jobs",
    "count_admin_keys",
    "create_api_key",
    "create_job",
    "create_study",
    "create_webhook",
    "dataset_bytes_used",
    "dataset_jobs",
    "dataset_lookup",
    "decode_cursor",
    "delete_dataset",
    "drop_worker",
    "durations",
    "enqueue_events",
    "ensure_team",
    "estimated_trace_points",
    "expire_running_leases",
    "find_idempotent",
    "find_keyed",
    "finish_job",
    "finish_with_trace",
    "get_api_key",
    "get_dataset",
    "get_job",
    "get_study",
    "get_study_any",
    "get_webhook",
    "heartbeat",
    "heartbeat_with_trace",
    "job_counts",
    "job_of_view_row",
    "job_view_row",
    "jobs_using_dataset",
    "last_outer_loss",
    "list_api_keys",
    "list_datasets",
    "list_deliveries",
    "list_events",
    "list_jobs",
    "list_studies",
    "list_teams",
    "list_webhooks",
    "live_workers",
    "load_artifact",
    "lock_study",
    "lock_team",
    "member_traces",
    "next_due_at",
    "owning_team",
    "ping_store",
    "pool_answers",
    "pool_state_age",
    "pool_view",
    "preemption_count",
    "queued_candidates",
    "queued_job_ids",
    "read_dataset_chunks",
    "reap",
    "record_attempt",
    "record_event",
    "refresh_pool_state",
    "release_job",
    "request_digest",
    "request_preemptions",
    "requeue_crashed",
    "reseal_webhook_secrets",
    "revoke_api_key",
    "revoke_webhook",
    "rewind_trace",
    "running_jobs",
    "save_artifact",
    "set_api_key_scope",
    "set_team_policy",
    "store_dataset",
    "stored_iteration",
    "study_members",
    "study_of_job",
    "study_status_counts",
    "takes_pass_turn",
    "team_by_name",
    "team_loads",
    "trace_columns",
    "trace_json",
    "trace_point_count",
    "trace_poll",
    "trace_span",
    "trace_span_of",
    "trace_version",
    "truncate_trace",
    "utcnow",
    "verify_key",
    "warm_sources",
    "write_trace",
]
