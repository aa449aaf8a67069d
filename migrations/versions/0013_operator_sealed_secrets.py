"""api keys may be ``operator``-scoped; webhook signing secrets sealed at rest

``api_keys.scope`` may be ``operator`` (the pool operator's key, made only on the server by
``bilevel keys create --operator``): the CHECK constraint from 0003 gains the value.

``webhooks.secret_sealed`` holds the signing secret encrypted under the server secret
(``jobs.sealing``) and ``webhooks.sealed_secret_id`` which server secret sealed it. This is
the expand step: ``webhooks.secret`` (the plaintext) stays, now nullable, and is still read
where present, so an API of the previous version keeps registering webhooks during a rolling
upgrade. The migration does not need the server secret: each worker's webhook sender seals
the plaintext rows on its next pass and clears their plaintext
(``repo.reseal_webhook_secrets``). A later migration (the contract step) drops the column.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 22:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD_SCOPES = ("team", "admin")
_NEW_SCOPES = (*_OLD_SCOPES, "operator")


def _scope_check(scopes: tuple[str, ...]) -> None:
    # SQLite cannot alter a constraint: batch mode rebuilds the table there
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_constraint(op.f("ck_api_keys_scope"), type_="check")
        batch.create_check_constraint(op.f("ck_api_keys_scope"), f"scope IN {scopes!r}")


def upgrade() -> None:
    _scope_check(_NEW_SCOPES)
    with op.batch_alter_table("webhooks") as batch:
        batch.add_column(sa.Column("secret_sealed", sa.String(length=400), nullable=True))
        batch.add_column(sa.Column("sealed_secret_id", sa.String(length=16), nullable=True))
        batch.alter_column("secret", existing_type=sa.String(length=100), nullable=True)


def downgrade() -> None:
    # an operator key becomes an admin key of its team; a sealed-only webhook cannot be
    # opened without the server secret, so it is revoked (its team registers it again)
    op.execute("UPDATE api_keys SET scope = 'admin' WHERE scope = 'operator'")
    _scope_check(_OLD_SCOPES)
    op.execute(
        "UPDATE webhooks SET revoked_at = CURRENT_TIMESTAMP, secret = '' WHERE secret IS NULL"
    )
    with op.batch_alter_table("webhooks") as batch:
        batch.alter_column("secret", existing_type=sa.String(length=100), nullable=False)
        batch.drop_column("sealed_secret_id")
        batch.drop_column("secret_sealed")
