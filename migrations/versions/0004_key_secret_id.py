"""api keys: which server secret each HMAC is keyed with, so the secret can be rotated

Rows from before have ``secret_id`` NULL: they are tried with the current and the previous
secret and get their ``secret_id`` on their next successful use.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 12:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("secret_id", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("secret_id")
