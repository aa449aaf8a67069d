"""jobs.plugin: the plugin package (and version) a job's problem kind came from

A kind added by an installed plugin (entry-point group ``bilevel.problems``) is recorded
with its package and version at submission; ``NULL`` for a built-in kind.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 20:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.add_column("jobs", sa.Column("plugin", _JSON, nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "plugin")
