"""The audit trail: recording admin actions and refused cross-team accesses, and reading it.

The store functions that make an audited change (a key created or revoked, a team's policy
set, a webhook created or deleted, a data set deleted) record it themselves, so the API and
the CLI on the store (``bilevel keys``, ``bilevel teams``) are audited alike; each takes
the :class:`Actor` who asks.

A team reads the events it acted in and those that touched its objects
(``target_team_id``); :func:`list_events` never returns another team's. Recording only adds
the row to the session: the caller commits it with the action it describes, in one
transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from jobs.status import AuditAction, AuditTarget
from jobs.store.models import Team
from jobs.store.models.audit import AuditEvent
from jobs.store.repo.pages import encode_cursor, page_after

__all__ = ["OPERATOR_AGENT", "Actor", "list_events", "owning_team", "record_event"]

#: The ``user_agent`` of an event the store's operator caused (no key, no address).
OPERATOR_AGENT = "bilevel CLI on the store"


@dataclass(frozen=True)
class Actor:
    """Who acts and from where: the key's team and identity, the client's address and agent."""

    team_id: uuid.UUID
    key_id: uuid.UUID | None
    key_prefix: str
    key_name: str
    address: str | None = None
    user_agent: str | None = None

    @classmethod
    def operator(cls, team_id: uuid.UUID) -> Actor:
        """The operator working on the store itself, for ``team_id``'s objects.

        ``bilevel keys`` and ``bilevel teams`` (and the embedded store's first start) act
        with no key and from no address; their events are the target team's own.
        """
        return cls(team_id=team_id, key_id=None, key_prefix="", key_name="",
                   user_agent=OPERATOR_AGENT)  # fmt: skip


def record_event(
    session: Session,
    actor: Actor,
    action: AuditAction,
    target_type: AuditTarget,
    target_id: str,
    *,
    target_team_id: uuid.UUID | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEvent:
    """Add an event to the session (the caller's commit writes it with the action).

    Args:
        session: the action's session.
        actor: who acts.
        action: ``<object>.<verb>``, e.g. ``key.revoke``.
        target_type: the kind of object (``key``, ``team``, ``job``, ...).
        target_id: its id, prefix or name.
        target_team_id: the team owning the target, when not ``actor.team_id``.
        before: the changed fields' values before the action.
        after: their values after it.
    """
    event = AuditEvent(
        team_id=actor.team_id,
        target_team_id=target_team_id if target_team_id != actor.team_id else None,
        key_id=actor.key_id,
        key_prefix=actor.key_prefix,
        key_name=actor.key_name,
        action=action,
        target_type=target_type,
        target_id=target_id,
        before=before,
        after=after,
        address=(actor.address or None) and actor.address[:100],
        user_agent=(actor.user_agent or None) and actor.user_agent[:300],
    )
    session.add(event)
    return event


def owning_team(
    session: Session, column: InstrumentedAttribute[Any], value: Any
) -> uuid.UUID | None:
    """The ``team_id`` of the row whose ``column`` equals ``value`` (any team's), else ``None``.

    Args:
        session: a session.
        column: a unique column of a mapped class with a ``team_id`` (``Job.id``,
            ``ApiKey.prefix``).
        value: the value to look up.
    """
    model = column.class_
    owner: uuid.UUID | None = session.scalar(select(model.team_id).where(column == value))
    return owner


def list_events(
    session: Session,
    team_id: uuid.UUID,
    *,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[tuple[AuditEvent, str]], str | None]:
    """A page of the team's events, newest first, each with its acting team's name.

    Args:
        session: a session.
        team_id: the reading team: events it acted in or whose target it owns.
        action: only this action.
        since: only events at or after this time (aware).
        until: only events before this time (aware).
        limit: the page size.
        cursor: the previous page's ``next_cursor``.

    Returns:
        The rows and the next page's cursor (``None`` on the last page).

    Raises:
        ValueError: a malformed ``cursor``.
    """
    q = (
        select(AuditEvent, Team.name)
        .join(Team, Team.id == AuditEvent.team_id)
        .where(or_(AuditEvent.team_id == team_id, AuditEvent.target_team_id == team_id))
    )
    if action is not None:
        q = q.where(AuditEvent.action == action)
    if since is not None:
        q = q.where(AuditEvent.created_at >= since)
    if until is not None:
        q = q.where(AuditEvent.created_at < until)
    rows = [(e, name) for e, name in session.execute(page_after(q, AuditEvent, cursor, limit))]
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (encode_cursor(rows[-1][0]) if more and rows else None)
