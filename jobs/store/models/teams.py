"""Teams and their API keys."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, Double, ForeignKey, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from jobs.status import KeyScope
from jobs.store.base import Base, UTCDateTime, check_in, utcnow

__all__ = ["ApiKey", "Team"]


class Team(Base):
    """A team: it owns jobs and API keys; nothing of one team is visible to another."""

    __tablename__ = "teams"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # fair share (jobs.fairshare): NULL takes the settings' default
    weight: Mapped[float | None] = mapped_column(Double)
    max_running_cpu: Mapped[int | None] = mapped_column(Integer)
    max_running_gpu: Mapped[int | None] = mapped_column(Integer)


class ApiKey(Base):
    """An API key: only its keyed hash is stored; ``prefix`` identifies it in listings.

    ``hash_scheme`` is ``hmac-sha256`` (see ``jobs.keys``) or, for rows written before the
    server secret existed, ``sha256``: the server default, so that a row inserted by an older
    API during a rolling upgrade is read correctly. ``secret_id`` names the server secret of an
    HMAC row (a rotation moves rows from the previous secret to the current one). ``scope``
    ``admin`` may manage the team's keys.
    """

    __tablename__ = "api_keys"
    __table_args__ = (CheckConstraint(check_in("scope", tuple(KeyScope)), name="scope"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    team_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("teams.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100), default="")
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    hash_scheme: Mapped[str] = mapped_column(
        String(16), default="hmac-sha256", server_default="sha256"
    )
    scope: Mapped[str] = mapped_column(
        String(16), default=KeyScope.TEAM, server_default=KeyScope.TEAM.value
    )
    # jobs.keys.secret_id of the server secret key_hash is keyed with; NULL before 0004
    secret_id: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
