"""Whether the store answers: the readiness probe's query."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

__all__ = ["ping_store"]


def ping_store(session: Session) -> None:
    """One round trip to the store; raises the driver's error if it does not answer."""
    session.execute(text("SELECT 1"))
