"""study warm start: the earlier members a search's sampler sees first

``studies.warm_start`` holds, for a search started from earlier studies or jobs of its team,
the snapshot read when it was created: ``{"trials": [{"job", "params", "values"}],
"skipped": {reason: count}}``. Nullable, so the previous version's inserts still work.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05 22:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("studies") as batch:
        batch.add_column(sa.Column("warm_start", _JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("studies") as batch:
        batch.drop_column("warm_start")
