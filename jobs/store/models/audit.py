"""The audit trail's table: who did what to which object, when, and from where.

One row per admin action (a key created or revoked, a team's weight or limits changed, a
webhook registered or deleted, a data set deleted) and per refused cross-team access (a
route that answered 404 because the object is another team's). ``team_id`` is the acting
team; ``target_team_id`` the team that owns the target when that is another one (a probe
of another team's job, a PATCH of another team's weight): ``GET /v1/audit`` shows a team
the rows it acted in and the rows that touched its objects, and no other.

The store functions that make an audited change record it (``jobs.store.repo.audit``), in
the change's transaction, whether the API or the CLI on the store asked for it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from jobs.status import ACTIONS
from jobs.store.base import JSON_VALUE, Base, UTCDateTime, check_in, utcnow

__all__ = ["AuditEvent"]


class AuditEvent(Base):
    """One audited action or refused access.

    Attributes:
        team_id: the acting key's team (the target's team for the CLI on the store).
        target_team_id: the team owning the target when it is not ``team_id``, else null.
        key_id, key_prefix, key_name: the acting key (kept as written: a key is never
            deleted, and its name may change meaning later).
        action: what was done, ``<object>.<verb>`` (``key.create``, ``access.denied``).
        target_type, target_id: the object acted on (``job`` and its id, ``team`` and name).
        before, after: the changed fields' values before and after, for changes.
        address, user_agent: the client's address and ``User-Agent`` header.
    """

    __tablename__ = "audit_events"
    __table_args__ = (
        CheckConstraint(check_in("action", ACTIONS), name="action"),
        Index("ix_audit_events_team_created", "team_id", "created_at", "id"),
        Index("ix_audit_events_target_team_created", "target_team_id", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    target_team_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("teams.id", ondelete="CASCADE")
    )
    key_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    key_prefix: Mapped[str] = mapped_column(String(16), default="")
    key_name: Mapped[str] = mapped_column(String(100), default="")
    action: Mapped[str] = mapped_column(String(40))
    target_type: Mapped[str] = mapped_column(String(20))
    target_id: Mapped[str] = mapped_column(String(200))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON_VALUE)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON_VALUE)
    address: Mapped[str | None] = mapped_column(String(100))
    user_agent: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
