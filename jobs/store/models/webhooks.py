"""Webhooks and the outbox of their deliveries."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from jobs.status import DeliveryStatus
from jobs.store.base import BIG_ID, JSON_VALUE, Base, UTCDateTime, check_in, utcnow

__all__ = ["Webhook", "WebhookDelivery"]


class Webhook(Base):
    """A URL a team's terminal job and study events are POSTed to, signed with its secret.

    The secret is shown once, at creation. Every delivery is signed with it (HMAC-SHA256, see
    ``jobs.webhooks``), so it is stored encrypted rather than hashed: ``secret_sealed`` under
    the server secret named by ``sealed_secret_id`` (``jobs.sealing``). ``secret`` holds the
    plaintext of a row written before 0013 (or by an older API during a rolling upgrade)
    until a worker seals it and clears it; a new row leaves it null.
    """

    __tablename__ = "webhooks"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    team_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("teams.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str] = mapped_column(String(200), default="")
    secret: Mapped[str | None] = mapped_column(String(100))  # plaintext, before 0013 only
    secret_sealed: Mapped[str | None] = mapped_column(String(400))
    # jobs.keys.secret_id of the server secret that sealed it
    sealed_secret_id: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebhookDelivery(Base):
    """One event for one webhook: pending until delivered, or failed after its attempts."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("webhook_id", "event_id", name="uq_webhook_deliveries_event"),
        CheckConstraint(check_in("status", tuple(DeliveryStatus)), name="status"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True, autoincrement=True)
    webhook_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhooks.id", ondelete="CASCADE"), index=True
    )
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    event_type: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON_VALUE)
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    response_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
