"""scale: the claim's per-team queue heads, the job list's status filter, requeue events

``ix_jobs_queued_head`` holds only queued jobs, by team, kind and the order a team's jobs
are taken in (priority, then age), on PostgreSQL: the claim reads each team's first one by
an index probe instead of ranking the whole queue. ``ix_jobs_team_status_created`` serves
``GET /v1/jobs`` with a status filter (newest first) and the quota counts
``ix_jobs_team_status`` served (its prefix), which it replaces. ``ix_job_events_requeued``
holds the few running -> queued events that ``/metrics`` counts.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05 22:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_QUEUED = sa.text("status = 'queued'")
_REQUEUED = sa.text("from_status = 'running' AND to_status = 'queued'")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":  # the embedded store ranks its queue
        op.create_index(
            "ix_jobs_queued_head",
            "jobs",
            ["team_id", "queue", sa.text("priority DESC"), "created_at", "id"],
            postgresql_where=_QUEUED,
        )
    op.create_index(
        "ix_jobs_team_status_created", "jobs", ["team_id", "status", "created_at", "id"]
    )
    op.drop_index("ix_jobs_team_status", table_name="jobs")
    op.create_index(
        "ix_job_events_requeued",
        "job_events",
        ["job_id"],
        postgresql_where=_REQUEUED,
        sqlite_where=_REQUEUED,
    )


def downgrade() -> None:
    op.drop_index("ix_job_events_requeued", table_name="job_events")
    op.create_index("ix_jobs_team_status", "jobs", ["team_id", "status"])
    op.drop_index("ix_jobs_team_status_created", table_name="jobs")
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_jobs_queued_head", table_name="jobs")
