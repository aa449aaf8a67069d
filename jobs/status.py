"""Every state of the service as an enum: the one place their names are written in Python.

Each is a ``StrEnum`` so that a member compares equal to, and serialises as, its plain
name: the database column, the REST API and the CLI's output keep the strings they always
had. Each drives its column's CHECK constraint (``jobs.store.models``) and its OpenAPI enum
(the API's schemas type their fields with it).
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "ACTIONS",
    "ACTIVE",
    "STATUSES",
    "TERMINAL",
    "AuditAction",
    "AuditTarget",
    "DeliveryStatus",
    "JobStatus",
    "KeyScope",
    "QueueKind",
]


class JobStatus(StrEnum):
    """Where a job is in its life: ``queued -> running -> succeeded | failed | cancelled``.

    A search study's member may also end ``pruned``: its study's pruner stopped it.

    A running job goes back to ``queued`` when its worker releases it (preemption, shutdown)
    or its lease expires, and resumes from its last checkpoint.
    """

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    #: a search study's member its pruner stopped at a hyper-iteration (trace kept)
    PRUNED = "pruned"

    @property
    def terminal(self) -> bool:
        """Whether the job has stopped for good (no transition leaves this status)."""
        return self in TERMINAL


#: Every status, in the order of a job's life (the database's CHECK constraint lists these).
STATUSES: tuple[JobStatus, ...] = tuple(JobStatus)
#: The statuses a job never leaves.
TERMINAL: frozenset[JobStatus] = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.PRUNED}
)
#: The statuses that count against a team's quotas.
ACTIVE: tuple[JobStatus, ...] = (JobStatus.QUEUED, JobStatus.RUNNING)


class KeyScope(StrEnum):
    """What an API key may do.

    ``team`` keys use the team's jobs, data sets and studies; ``admin`` keys may also manage
    the team's keys and webhooks and read its audit. ``operator`` keys run the shared pool:
    what an admin key may do for its own team, and also set any team's weight and running
    limits, see every team in ``/v1/pool`` and read ``/metrics``. An operator key is made
    only on the server side (``bilevel keys create --operator``), never through the API.
    """

    TEAM = "team"
    ADMIN = "admin"
    OPERATOR = "operator"


class QueueKind(StrEnum):
    """The kind of worker a job runs on, and the Celery queue suffix (``<prefix>.<kind>``)."""

    CPU = "cpu"
    GPU = "gpu"


class DeliveryStatus(StrEnum):
    """A webhook delivery's state: ``pending`` until delivered, or ``failed`` after its tries."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class AuditAction(StrEnum):
    """What an audit event records.

    ``<object>.<verb>`` of an admin action, or ``access.denied``: a refused access (the API
    answered 404 for another team's object, or 403 for a route the key's scope may not use).
    """

    ACCESS_DENIED = "access.denied"
    DATASET_DELETE = "dataset.delete"
    KEY_CREATE = "key.create"
    KEY_REVOKE = "key.revoke"
    TEAM_UPDATE = "team.update"
    WEBHOOK_CREATE = "webhook.create"
    WEBHOOK_DELETE = "webhook.delete"


#: Every action an event may record.
ACTIONS: tuple[AuditAction, ...] = tuple(AuditAction)


class AuditTarget(StrEnum):
    """The kind of object an audit event acted on (its ``target_type``)."""

    DATASET = "dataset"
    #: a route refused to the key's scope (``target_id``: ``<METHOD> <path>``)
    ENDPOINT = "endpoint"
    JOB = "job"
    KEY = "key"
    STUDY = "study"
    TEAM = "team"
    WEBHOOK = "webhook"


class TrialStatus(StrEnum):
    """Where a search study's trial stands, as its sampler is told (``study_members``).

    A member's job may have ended while its trial is still ``running`` here: the study's
    next step (``jobs.studies.search.advance``) records it once.
    """

    RUNNING = "running"
    COMPLETE = "complete"
    PRUNED = "pruned"
    FAIL = "fail"
