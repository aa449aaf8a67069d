"""What a data-changing statement did, typed: SQLAlchemy types ``Session.execute`` as ``Result``."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, Executable
from sqlalchemy.orm import Session

__all__ = ["rows_changed"]


def rows_changed(session: Session, statement: Executable) -> int:
    """Execute an ``INSERT``/``UPDATE``/``DELETE`` and return how many rows it matched.

    Args:
        session: the session (and transaction) to run ``statement`` in.
        statement: a DML statement without ``RETURNING``.

    Returns:
        The driver's row count: the rows the ``WHERE`` clause matched.
    """
    # a DML statement always yields a CursorResult; the cast only tells the type checker
    return cast(CursorResult[Any], session.execute(statement)).rowcount
