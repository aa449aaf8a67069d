"""request digest: an idempotent retry is compared with the body as the client sent it

``jobs.request_sha256`` and ``studies.request_sha256`` hold the SHA-256 of the create's body
in canonical JSON (``jobs.store.repo.idempotency.request_digest``), so a retry through a
later release, whose normal form of the same body may differ, still finds its resource.
Nullable: the previous release's inserts leave it empty, and such rows are compared by the
normal form as before.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06 01:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("jobs", "studies")


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("request_sha256", sa.String(64), nullable=True))


def downgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("request_sha256")
