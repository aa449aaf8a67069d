"""Request and response bodies of ``/v1/webhooks``."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from jobs.models import Webhook, WebhookDelivery
from jobs.specs.job import TEXT

__all__ = [
    "DeliveriesPublic",
    "DeliveryPublic",
    "WebhookCreate",
    "WebhookCreated",
    "WebhookPublic",
    "WebhooksPublic",
]


class WebhookCreate(BaseModel):
    """A URL to POST the team's terminal job and study events to."""

    model_config = ConfigDict(strict=True, extra="forbid")

    url: Annotated[str, Field(min_length=1, max_length=2000, pattern=TEXT)]
    description: Annotated[str, Field(max_length=200, pattern=TEXT)] = ""


class WebhookPublic(BaseModel):
    """A webhook as listed: never its secret."""

    id: uuid.UUID
    url: str
    description: str
    created_at: datetime
    revoked_at: datetime | None = None

    @classmethod
    def of(cls, hook: Webhook) -> WebhookPublic:
        """The public view of a webhook row."""
        return cls(id=hook.id, url=hook.url, description=hook.description,
                   created_at=hook.created_at, revoked_at=hook.revoked_at)  # fmt: skip


class WebhookCreated(WebhookPublic):
    """The new webhook with its signing secret: shown this once."""

    secret: str


class WebhooksPublic(BaseModel):
    """The team's active webhooks."""

    data: list[WebhookPublic]
    count: int


class DeliveryPublic(BaseModel):
    """One event's delivery to a webhook: pending, delivered, or failed after its attempts."""

    id: int
    event_id: uuid.UUID
    event_type: str
    subject_id: uuid.UUID
    status: str
    attempts: int
    response_status: int | None = None
    last_error: str | None = None
    next_attempt_at: datetime
    created_at: datetime
    delivered_at: datetime | None = None

    @classmethod
    def of(cls, d: WebhookDelivery) -> DeliveryPublic:
        """The public view of a delivery row."""
        return cls(id=d.id, event_id=d.event_id, event_type=d.event_type,
                   subject_id=d.subject_id, status=d.status, attempts=d.attempts,
                   response_status=d.response_status, last_error=d.last_error,
                   next_attempt_at=d.next_attempt_at, created_at=d.created_at,
                   delivered_at=d.delivered_at)  # fmt: skip


class DeliveriesPublic(BaseModel):
    """A webhook's deliveries, newest first."""

    data: list[DeliveryPublic]
    count: int
