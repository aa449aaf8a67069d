"""Request and response bodies of the REST API, one module per resource.

The models' docstrings become the descriptions of their schemas in ``/openapi.json``, and so
of the classes a client generator writes from it. The ``responses`` entries routes document
them with (problem+json, files, links) are :mod:`api.openapi`'s.
"""

from api.schemas.audit import AuditEventPublic, AuditPage, Time
from api.schemas.datasets import ArrayPublic, DatasetJob, DatasetPublic, DatasetsPublic
from api.schemas.errors import FieldError, Problem
from api.schemas.health import Health, Readiness
from api.schemas.jobs import (
    JobError,
    JobPublic,
    JobResult,
    JobsPublic,
    PluginSource,
    Progress,
    TracePublic,
)
from api.schemas.keys import KeyCreate, KeyCreated, KeyPublic, KeysPublic
from api.schemas.pool import (
    KindPublic,
    PoolPublic,
    QueuedPublic,
    TeamPatch,
    TeamPublic,
    TeamShare,
    WorkerPublic,
)
from api.schemas.problems import ProblemKind, ProblemsPublic
from api.schemas.studies import (
    MetricStat,
    StudiesPublic,
    StudyCreate,
    StudyMemberPublic,
    StudyProgress,
    StudyPublic,
    StudyRow,
)
from api.schemas.webhooks import (
    DeliveriesPublic,
    DeliveryPublic,
    WebhookCreate,
    WebhookCreated,
    WebhookPublic,
    WebhooksPublic,
)

__all__ = [
    "ArrayPublic",
    "AuditEventPublic",
    "AuditPage",
    "DatasetJob",
    "DatasetPublic",
    "DatasetsPublic",
    "DeliveriesPublic",
    "DeliveryPublic",
    "FieldError",
    "Health",
    "JobError",
    "JobPublic",
    "JobResult",
    "JobsPublic",
    "KeyCreate",
    "KeyCreated",
    "KeyPublic",
    "KeysPublic",
    "KindPublic",
    "MetricStat",
    "PluginSource",
    "PoolPublic",
    "Problem",
    "ProblemKind",
    "ProblemsPublic",
    "Progress",
    "QueuedPublic",
    "Readiness",
    "StudiesPublic",
    "StudyCreate",
    "StudyMemberPublic",
    "StudyProgress",
    "StudyPublic",
    "StudyRow",
    "TeamPatch",
    "TeamPublic",
    "TeamShare",
    "Time",
    "TracePublic",
    "WebhookCreate",
    "WebhookCreated",
    "WebhookPublic",
    "WebhooksPublic",
    "WorkerPublic",
]
