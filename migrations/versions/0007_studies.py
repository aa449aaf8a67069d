"""studies, webhooks: a grid of jobs as one object; signed terminal-event notifications;
each trace point's peak hypergradient memory

``studies`` holds a study's base spec, grid and skipped combinations, ``study_members`` its
jobs with their grid values. ``trace_points.peak_bytes`` (and its rollup in
``trace_blocks``) records the bytes a hyper-iteration's hypergradient held at its peak.
``webhooks`` and ``webhook_deliveries`` hold a team's notification URLs and each event's
delivery to each of them (an outbox: a worker sends them, retrying with backoff).

Revision ID: 0007
Revises: 0004
Create Date: 2026-11-29 17:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "studies",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("team_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("base", _JSON, nullable=False),
        sa.Column("grid", _JSON, nullable=False),
        sa.Column("group_by", _JSON, nullable=False),
        sa.Column("skipped", _JSON, nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["team_id"], ["teams.id"], name=op.f("fk_studies_team_id_teams"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_studies")),
    )
    op.create_index("ix_studies_team_created", "studies", ["team_id", "created_at", "id"])
    op.create_table(
        "study_members",
        sa.Column("study_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("values", _JSON, nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_study_members_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["study_id"],
            ["studies.id"],
            name=op.f("fk_study_members_study_id_studies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("study_id", "position", name=op.f("pk_study_members")),
        sa.UniqueConstraint("job_id", name=op.f("uq_study_members_job_id")),
    )
    op.create_table(
        "webhooks",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("team_id", sa.Uuid(), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("description", sa.String(length=200), nullable=False),
        sa.Column("secret", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["team_id"], ["teams.id"], name=op.f("fk_webhooks_team_id_teams"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhooks")),
    )
    op.create_index(op.f("ix_webhooks_team_id"), "webhooks", ["team_id"])
    op.create_table(
        "webhook_deliveries",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("webhook_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("event_type", sa.String(length=32), nullable=False),
        sa.Column("subject_id", sa.Uuid(), nullable=False),
        sa.Column("payload", _JSON, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=False),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("delivered_at", sa.DateTime(), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'delivered', 'failed')",
            name=op.f("ck_webhook_deliveries_status"),
        ),
        sa.ForeignKeyConstraint(
            ["webhook_id"],
            ["webhooks.id"],
            name=op.f("fk_webhook_deliveries_webhook_id_webhooks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
        sa.UniqueConstraint("webhook_id", "event_id", name="uq_webhook_deliveries_event"),
    )
    op.create_index(
        "ix_webhook_deliveries_due", "webhook_deliveries", ["status", "next_attempt_at"]
    )
    op.create_index(op.f("ix_webhook_deliveries_webhook_id"), "webhook_deliveries", ["webhook_id"])
    with op.batch_alter_table("trace_points") as batch:
        batch.add_column(sa.Column("peak_bytes", sa.Double(), nullable=True))
    with op.batch_alter_table("trace_blocks") as batch:
        batch.add_column(sa.Column("peak_bytes_min", sa.Double(), nullable=True))
        batch.add_column(sa.Column("peak_bytes_min_it", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("peak_bytes_max", sa.Double(), nullable=True))
        batch.add_column(sa.Column("peak_bytes_max_it", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("trace_blocks") as batch:
        for col in ("peak_bytes_max_it", "peak_bytes_max", "peak_bytes_min_it", "peak_bytes_min"):
            batch.drop_column(col)
    with op.batch_alter_table("trace_points") as batch:
        batch.drop_column("peak_bytes")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhooks")
    op.drop_table("study_members")
    op.drop_index("ix_studies_team_created", table_name="studies")
    op.drop_table("studies")
