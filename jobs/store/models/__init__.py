"""The store's tables (SQLAlchemy 2), one module per resource, all on :class:`Base`.

Importing this package defines every table, so ``Base.metadata`` (what Alembic compares
the migrations with) is complete.
"""

from jobs.store.base import Base, UTCDateTime, utcnow
from jobs.store.models.audit import AuditEvent
from jobs.store.models.datasets import Dataset, DatasetBlob, DatasetChunk
from jobs.store.models.jobs import Artifact, Job, JobEvent, JobTeamCount, Worker
from jobs.store.models.studies import Study, StudyMember
from jobs.store.models.teams import ApiKey, Team
from jobs.store.models.traces import (
    TRACE_BLOCK,
    TRACE_FIELDS,
    TRACE_PARTITIONS,
    TraceCompaction,
    TracePoint,
    trace_blocks,
)
from jobs.store.models.webhooks import Webhook, WebhookDelivery

__all__ = [
    "TRACE_BLOCK",
    "TRACE_FIELDS",
    "TRACE_PARTITIONS",
    "ApiKey",
    "Artifact",
    "AuditEvent",
    "Base",
    "Dataset",
    "DatasetBlob",
    "DatasetChunk",
    "Job",
    "JobEvent",
    "JobTeamCount",
    "Study",
    "StudyMember",
    "Team",
    "TraceCompaction",
    "TracePoint",
    "UTCDateTime",
    "Webhook",
    "WebhookDelivery",
    "Worker",
    "trace_blocks",
    "utcnow",
]
