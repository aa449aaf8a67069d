"""Alembic migrations of the job store (``bilevel migrate`` or ``alembic upgrade head``)."""
