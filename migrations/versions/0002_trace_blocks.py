"""trace blocks: per 64 iterations, each trace field's extremes (for fast downsampling)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 07:14:07.258840
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "trace_blocks",
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("block", sa.Integer(), nullable=False),
        sa.Column("outer_loss_min", sa.Double(), nullable=True),
        sa.Column("outer_loss_min_it", sa.Integer(), nullable=True),
        sa.Column("outer_loss_max", sa.Double(), nullable=True),
        sa.Column("outer_loss_max_it", sa.Integer(), nullable=True),
        sa.Column("grad_norm_min", sa.Double(), nullable=True),
        sa.Column("grad_norm_min_it", sa.Integer(), nullable=True),
        sa.Column("grad_norm_max", sa.Double(), nullable=True),
        sa.Column("grad_norm_max_it", sa.Integer(), nullable=True),
        sa.Column("lr_min", sa.Double(), nullable=True),
        sa.Column("lr_min_it", sa.Integer(), nullable=True),
        sa.Column("lr_max", sa.Double(), nullable=True),
        sa.Column("lr_max_it", sa.Integer(), nullable=True),
        sa.Column("time_s_min", sa.Double(), nullable=True),
        sa.Column("time_s_min_it", sa.Integer(), nullable=True),
        sa.Column("time_s_max", sa.Double(), nullable=True),
        sa.Column("time_s_max_it", sa.Integer(), nullable=True),
        sa.Column("exact_norm_min", sa.Double(), nullable=True),
        sa.Column("exact_norm_min_it", sa.Integer(), nullable=True),
        sa.Column("exact_norm_max", sa.Double(), nullable=True),
        sa.Column("exact_norm_max_it", sa.Integer(), nullable=True),
        sa.Column("cosine_min", sa.Double(), nullable=True),
        sa.Column("cosine_min_it", sa.Integer(), nullable=True),
        sa.Column("cosine_max", sa.Double(), nullable=True),
        sa.Column("cosine_max_it", sa.Integer(), nullable=True),
        sa.Column("rel_error_min", sa.Double(), nullable=True),
        sa.Column("rel_error_min_it", sa.Integer(), nullable=True),
        sa.Column("rel_error_max", sa.Double(), nullable=True),
        sa.Column("rel_error_max_it", sa.Integer(), nullable=True),
        sa.Column("descent_ratio_min", sa.Double(), nullable=True),
        sa.Column("descent_ratio_min_it", sa.Integer(), nullable=True),
        sa.Column("descent_ratio_max", sa.Double(), nullable=True),
        sa.Column("descent_ratio_max_it", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_trace_blocks_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", "block", name=op.f("pk_trace_blocks")),
    )


def downgrade() -> None:
    op.drop_table("trace_blocks")
