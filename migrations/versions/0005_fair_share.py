"""fair share: team weights and limits, job priority and preemption, worker heartbeats

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 17:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("teams") as batch:
        batch.add_column(sa.Column("weight", sa.Double(), nullable=True))
        batch.add_column(sa.Column("max_running_cpu", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("max_running_gpu", sa.Integer(), nullable=True))
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("priority", sa.Integer(), server_default="1", nullable=False))
        batch.add_column(sa.Column("running_since", sa.DateTime(), nullable=True))
        batch.add_column(
            sa.Column("preempt_requested", sa.Boolean(), server_default=sa.false(),
                      nullable=False)
        )  # fmt: skip
        batch.create_index("ix_jobs_queue_status", ["queue", "status"])
    op.create_table(
        "workers",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("queue", sa.String(length=32), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("last_seen", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_workers")),
    )


def downgrade() -> None:
    op.drop_table("workers")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_queue_status")
        batch.drop_column("preempt_requested")
        batch.drop_column("running_since")
        batch.drop_column("priority")
    with op.batch_alter_table("teams") as batch:
        batch.drop_column("max_running_gpu")
        batch.drop_column("max_running_cpu")
        batch.drop_column("weight")
