"""Alembic migrations of the job store (``bilevel migrate`` or ``alembic upgrade head``).

:func:`upgrade` runs them from code; the job domain (``jobs``) never imports this package.
"""

from migrations.runner import alembic_config, upgrade

__all__ = ["alembic_config", "upgrade"]
