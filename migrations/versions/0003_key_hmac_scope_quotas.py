"""api keys: keyed hash scheme and scope; an index for per-team job quotas

Existing keys keep their plain SHA-256 (``hash_scheme`` ``sha256``) until their next
successful use rehashes them to HMAC-SHA256; they all get scope ``team``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(
            sa.Column("hash_scheme", sa.String(length=16), server_default="sha256", nullable=False)
        )
        batch.add_column(
            sa.Column("scope", sa.String(length=16), server_default="team", nullable=False)
        )
        batch.create_check_constraint(op.f("ck_api_keys_scope"), "scope IN ('team', 'admin')")
    op.create_index("ix_jobs_team_status", "jobs", ["team_id", "status"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_jobs_team_status", table_name="jobs")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_constraint(op.f("ck_api_keys_scope"), type_="check")
        batch.drop_column("scope")
        batch.drop_column("hash_scheme")
