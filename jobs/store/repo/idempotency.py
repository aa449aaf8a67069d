"""``Idempotency-Key``: a retried create returns what the first one made, for every resource.

Jobs, studies and data sets each keep the key they were created with, unique per team. A
create first looks the key up (a replay creates nothing); one that still loses the race to
a concurrent create with the same key finds the winner's row through the unique index.
Either way the replayed request must be the same as the first, else
:class:`IdempotencyConflict`.

"The same" is first the body as the client sent it: :func:`request_digest` hashes it in
canonical JSON (keys sorted, no whitespace), and the row keeps that digest. A retry through
another release matches it even where the releases' normal forms of the body differ (a field
added with a default, a default changed). Rows written before the digest existed, and
bodies spelled differently that mean the same, are still compared by the normal form each
resource keeps (its ``same``).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from jobs.store.models import Dataset, Job, Study

__all__ = ["IdempotencyConflict", "find_keyed", "insert_keyed", "replayed", "request_digest",
           "same_request"]  # fmt: skip

Keyed = TypeVar("Keyed", Job, Study, Dataset)
# the resources created from a JSON body (a data set is compared by its file's digest)
Hashed = TypeVar("Hashed", Job, Study)

_KINDS: dict[type, str] = {Job: "job", Study: "study", Dataset: "data set"}


class IdempotencyConflict(Exception):
    """An ``Idempotency-Key`` reused with a different request.

    Attributes:
        row: what the key was first used for (a job, a study or a data set).
    """

    def __init__(self, row: Job | Study | Dataset, what: str):
        super().__init__(
            f"Idempotency-Key {row.idempotency_key!r} already used for {_KINDS[type(row)]} "
            f"{row.id} with another {what}"
        )
        self.row = row


def request_digest(body: Any) -> str:
    """SHA-256 (hex) of a parsed JSON body in canonical form: keys sorted, no whitespace.

    Two bodies that differ only in key order or spacing have the same digest; numbers keep
    their JSON spelling as Python reads it (``1`` and ``1.0`` differ).
    """
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def find_keyed(session: Session, model: type[Keyed], team_id: uuid.UUID, key: str) -> Keyed | None:
    """The team's ``model`` row created with ``key``, if any (a replay, not a new one)."""
    return session.scalar(select(model).where(model.team_id == team_id,
                                              model.idempotency_key == key))  # fmt: skip


def replayed(row: Keyed, same: Callable[[Keyed], bool], what: str) -> Keyed:
    """``row`` when ``same(row)`` (the request repeats the first one), else the conflict.

    Raises:
        IdempotencyConflict: the key was first used with another ``what`` (``spec``, ...).
    """
    if not same(row):
        raise IdempotencyConflict(row, what)
    return row


def same_request(digest: str | None, normal: Callable[[Hashed], bool]) -> Callable[[Hashed], bool]:
    """The ``same`` of :func:`replayed` for a resource created from a JSON body.

    A row repeats the request when the body's ``digest`` is the row's, or else when
    ``normal(row)`` (the normal forms agree: rows stored without a digest, and bodies
    spelled differently that mean the same). ``digest`` is ``None`` when none was taken.
    """

    def same(row: Hashed) -> bool:
        if digest is not None and row.request_sha256 == digest:
            return True
        return normal(row)

    return same


def insert_keyed(
    session: Session, row: Keyed, same: Callable[[Keyed], bool], what: str
) -> tuple[Keyed, bool]:
    """Insert ``row``; if a concurrent create with its key won the race, that one instead.

    Returns:
        ``(row, created)``: the inserted row, or the winner's (checked with ``same``).

    Raises:
        IdempotencyConflict: the winner was made from another ``what``.
    """
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        key = row.idempotency_key
        existing = None if key is None else find_keyed(session, type(row), row.team_id, key)
        if existing is None:
            raise
        return replayed(existing, same, what), False
    return row, True
