"""Bodies of ``/v1/audit``: an event as a team reads it, a page of them, and the query's time."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field

from jobs.audit_actions import AuditAction

if TYPE_CHECKING:  # the row is only read here; its module loads with jobs.models
    from jobs.audit_models import AuditEvent

__all__ = ["AuditEventPublic", "AuditPage", "Time"]


class AuditEventPublic(BaseModel):
    """One audited action or refused access."""

    id: uuid.UUID
    created_at: datetime
    action: AuditAction
    target_type: str = Field(description="`key`, `team`, `job`, `dataset`, `study`, `webhook`")
    target_id: str = Field(description="the target's id, a key's prefix or a team's name")
    team: str = Field(description="the acting key's team")
    own: bool = Field(description="your team acted; false: another team touched your object")
    key_prefix: str | None = Field(description="the acting key; null when another team's")
    key_name: str | None = Field(description="the acting key's name; null when another team's")
    address: str | None = Field(description="the client's address; null when another team's")
    user_agent: str | None = Field(description="its User-Agent; null when another team's")
    before: dict[str, Any] | None = Field(description="the changed fields before the action")
    after: dict[str, Any] | None = Field(description="the changed fields after it")

    @classmethod
    def of(cls, event: AuditEvent, team_name: str, reader: uuid.UUID) -> AuditEventPublic:
        """The event as team ``reader`` sees it: another team's key and client withheld."""
        own = event.team_id == reader
        return cls(
            id=event.id, created_at=event.created_at, action=event.action,
            target_type=event.target_type, target_id=event.target_id, team=team_name, own=own,
            key_prefix=event.key_prefix if own else None,
            key_name=event.key_name if own else None,
            address=event.address if own else None,
            user_agent=event.user_agent if own else None,
            before=event.before, after=event.after,
        )  # fmt: skip


class AuditPage(BaseModel):
    """A page of audit events, newest first; ``next_cursor`` asks for the next (older) page."""

    data: list[AuditEventPublic]
    count: int
    next_cursor: str | None = None


# RFC 3339's date-time, what the schema's `format: date-time` states: pydantic alone would
# also take a bare date or a number of seconds, which the schema calls invalid
_RFC3339 = re.compile(r"^\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)$")


def _rfc3339(value: Any) -> Any:
    if isinstance(value, str) and not _RFC3339.match(value):
        raise ValueError(f"expected an RFC 3339 date-time with offset, got {value!r}")
    return value


def _utc(at: datetime) -> datetime:
    """``at`` as aware UTC.

    A time without offset is taken as UTC; one beyond the calendar's ends in UTC (year 1
    with a positive offset, year 9999 with a negative one) is clamped to them.
    """
    if at.tzinfo is None:
        return at.replace(tzinfo=UTC)
    try:
        return at.astimezone(UTC)
    except OverflowError:
        edge = datetime.min if at.year == 1 else datetime.max
        return edge.replace(tzinfo=UTC)


#: A query's time: RFC 3339 with its offset, as aware UTC.
Time = Annotated[datetime, BeforeValidator(_rfc3339), AfterValidator(_utc)]
