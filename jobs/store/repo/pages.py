"""Keyset pagination, newest first, shared by the list routes (jobs, audit events).

A cursor is ``<microseconds since the epoch>-<id as 32 hex digits>``: the ``created_at``
and ``id`` of the last row of the previous page. The format is public and stated as a
pattern in the OpenAPI document (:data:`CURSOR_PATTERN`), so that every string matching it
is a cursor the API accepts: a position past the newest row or before the oldest one
answers a full or an empty page, never an error.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

from sqlalchemy import Select, and_, or_

__all__ = ["CURSOR_DESCRIPTION", "CURSOR_PATTERN", "Keyed", "decode_cursor", "encode_cursor",
           "page_after"]  # fmt: skip

CURSOR_PATTERN = r"^[0-9]{1,19}-[0-9a-f]{32}$"
CURSOR_DESCRIPTION = (
    "`next_cursor` of the previous page: `<microseconds since 1970-01-01 UTC>-<id as 32 hex "
    "digits>` of the last row it held; any value of this form is accepted"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime.max.replace(tzinfo=UTC)
_CURSOR = re.compile(CURSOR_PATTERN)
_S = TypeVar("_S", bound=Select[*tuple[Any, ...]])  # a select of any row shape


class Keyed(Protocol):
    """A row a page is keyed on: when it was made and its id (a UUID)."""

    @property
    def created_at(self) -> datetime:
        """When the row was made (aware UTC)."""
        ...

    @property
    def id(self) -> uuid.UUID:
        """The row's id."""
        ...


def encode_cursor(row: Keyed) -> str:
    """The ``next_cursor`` that resumes a newest-first listing after ``row``."""
    micros = (row.created_at - _EPOCH) // timedelta(microseconds=1)
    return f"{micros}-{row.id.hex}"


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The ``(created_at, id)`` a cursor names; a time beyond year 9999 is read as the latest.

    Raises:
        ValueError: ``cursor`` does not match :data:`CURSOR_PATTERN` (names the value).
    """
    if not _CURSOR.match(cursor):
        raise ValueError(f"malformed cursor {cursor!r}: expected <microseconds>-<32 hex digits>")
    micros, _, hex_id = cursor.partition("-")
    try:
        at = _EPOCH + timedelta(microseconds=int(micros))
    except OverflowError:
        at = _LATEST
    return at, uuid.UUID(hex=hex_id)


def page_after(q: _S, model: Any, cursor: str | None, limit: int) -> _S:
    """``q`` ordered newest first, after ``cursor``, one row more than ``limit`` (to see more).

    Args:
        q: a select of ``model`` rows.
        model: a mapped class with ``created_at`` and ``id`` columns.
        cursor: the previous page's ``next_cursor``, or ``None`` for the first page.
        limit: the page size.

    Raises:
        ValueError: a malformed ``cursor``.
    """
    if cursor is not None:
        at, rid = decode_cursor(cursor)
        q = q.where(or_(model.created_at < at, and_(model.created_at == at, model.id < rid)))
    return q.order_by(model.created_at.desc(), model.id.desc()).limit(limit + 1)
