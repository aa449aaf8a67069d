"""``/v1/audit``: the team's audit trail, newest first (admin keys only).

A team reads the events its keys acted in, in full, and the events another team's key
caused on its objects (an ``access.denied`` probe of its job, a PATCH of its weight): those
name the acting team but not its key, address or user agent, which are that team's own.
No team reads an event that neither it acted in nor touched its objects.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import AfterValidator, BaseModel, BeforeValidator, Field

from api.deps import AdminDep, SessionDep
from api.schemas import auth_responses, problem_doc
from jobs.status import AuditAction, AuditTarget
from jobs.store import repo
from jobs.store.models.audit import AuditEvent
from jobs.store.repo.pages import CURSOR_DESCRIPTION, CURSOR_PATTERN

__all__ = ["AuditEventPublic", "AuditPage", "router"]

router = APIRouter(
    prefix="/v1/audit",
    tags=["audit"],
    responses={
        **auth_responses(),
        403: problem_doc("the key is not admin-scoped"),
        422: problem_doc("invalid field(s), each named in `errors`"),
    },
)


class AuditEventPublic(BaseModel):
    """One audited action or refused access."""

    id: uuid.UUID
    created_at: datetime
    action: AuditAction
    target_type: AuditTarget
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


@router.get("", response_model=AuditPage)
def list_audit(
    session: SessionDep,
    admin: AdminDep,
    action: Annotated[AuditAction | None, Query(description="only this action")] = None,
    since: Annotated[Time | None, Query(description="only events at or after it")] = None,
    until: Annotated[Time | None, Query(description="only events before it")] = None,
    limit: Annotated[int, Query(ge=1, le=200, description="page size")] = 50,
    cursor: Annotated[
        str | None, Query(pattern=CURSOR_PATTERN, description=CURSOR_DESCRIPTION)
    ] = None,
) -> AuditPage:
    """The team's audit trail, newest first: admin actions and refused cross-team accesses."""
    team_id = admin.team.id
    rows, next_cursor = repo.list_events(
        session, team_id, action=action, since=since, until=until, limit=limit,
        cursor=cursor,
    )  # fmt: skip
    data = [AuditEventPublic.of(e, name, team_id) for e, name in rows]
    return AuditPage(data=data, count=len(data), next_cursor=next_cursor)
