"""jobs, workers, audit_events: CHECK the queue kind and the audit action

The job status, key scope and delivery status had their CHECK constraints from the start;
a job's and a worker's queue kind (``jobs.status.QueueKind``) and an audit event's action
(``jobs.status.AuditAction``) now have theirs, written from the same enums in the models.
The values are spelled out here: a migration is history and must not follow a later enum.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 01:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CHECKS = (
    ("jobs", "queue", "queue IN ('cpu', 'gpu')"),
    ("workers", "queue", "queue IN ('cpu', 'gpu')"),
    (
        "audit_events",
        "action",
        "action IN ('access.denied', 'dataset.delete', 'key.create', 'key.revoke', "
        "'team.update', 'webhook.create', 'webhook.delete')",
    ),
)


def upgrade() -> None:
    for table, name, condition in _CHECKS:
        # batch: SQLite adds a constraint by copying the table
        with op.batch_alter_table(table) as batch:
            batch.create_check_constraint(op.f(f"ck_{table}_{name}"), condition)


def downgrade() -> None:
    for table, name, _ in reversed(_CHECKS):
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(op.f(f"ck_{table}_{name}"), type_="check")
