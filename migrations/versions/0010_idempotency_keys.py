"""studies and datasets: an Idempotency-Key per team, as jobs have

A retried ``POST /v1/studies`` or ``POST /v1/datasets`` (the answer was lost) with the same
key returns the first study or data set rather than creating a second; the unique index per
team settles two concurrent retries.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29 21:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("studies", "datasets")


def upgrade() -> None:
    for table in _TABLES:
        op.add_column(table, sa.Column("idempotency_key", sa.String(length=200), nullable=True))
        # an index, not a constraint: SQLite adds one without rebuilding the table
        op.create_index(f"uq_{table}_team_idempotency", table, ["team_id", "idempotency_key"],
                        unique=True)  # fmt: skip


def downgrade() -> None:
    for table in _TABLES:
        op.drop_index(f"uq_{table}_team_idempotency", table_name=table)
        op.drop_column(table, "idempotency_key")
