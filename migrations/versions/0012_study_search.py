"""study search: studies whose members a sampler asks for; the ``pruned`` job status

``studies.kind`` is ``grid`` (every member made at once, as before) or ``search``;
``studies.search`` holds a search's space, sampler, budget, objectives, pruner and seed, and
``studies.search_done`` whether its budget is spent. ``study_members.trial_state`` and
``objectives`` record each finished trial as its sampler is told it, ``sampler_attrs``
what its sampler wrote on it when asked, (the trial number is
the member's ``position``, the primary key with the study). ``jobs.status`` may be
``pruned``: a member its study's pruner stopped.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 01:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_OLD = ("queued", "running", "succeeded", "failed", "cancelled")
_NEW = (*_OLD, "pruned")


def _status_check(statuses: tuple[str, ...]) -> None:
    # SQLite cannot alter a constraint: batch mode rebuilds the table there
    with op.batch_alter_table("jobs") as batch:
        batch.drop_constraint(op.f("ck_jobs_status"), type_="check")
        batch.create_check_constraint(op.f("ck_jobs_status"), f"status IN {statuses!r}")


def upgrade() -> None:
    with op.batch_alter_table("studies") as batch:
        batch.add_column(
            sa.Column("kind", sa.String(length=16), nullable=False, server_default="grid")
        )
        batch.add_column(sa.Column("search", _JSON, nullable=True))
        batch.add_column(
            sa.Column("search_done", sa.Boolean(), nullable=False, server_default=sa.true())
        )
    with op.batch_alter_table("study_members") as batch:
        batch.add_column(sa.Column("trial_state", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("objectives", _JSON, nullable=True))
        batch.add_column(sa.Column("sampler_attrs", _JSON, nullable=True))
    _status_check(_NEW)


def downgrade() -> None:
    op.execute("UPDATE jobs SET status = 'cancelled' WHERE status = 'pruned'")
    _status_check(_OLD)
    with op.batch_alter_table("study_members") as batch:
        batch.drop_column("sampler_attrs")
        batch.drop_column("objectives")
        batch.drop_column("trial_state")
    with op.batch_alter_table("studies") as batch:
        batch.drop_column("search_done")
        batch.drop_column("search")
        batch.drop_column("kind")
