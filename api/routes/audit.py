"""``/v1/audit``: the team's audit trail, newest first (admin keys only).

A team reads the events its keys acted in, in full, and the events another team's key
caused on its objects (an ``access.denied`` probe of its job, a PATCH of its weight): those
name the acting team but not its key, address or user agent, which are that team's own.
No team reads an event that neither it acted in nor touched its objects.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import AdminDep, SessionDep
from api.openapi import auth_responses, problem_doc
from api.params import Digits
from api.schemas.audit import AuditEventPublic, AuditPage, Time
from jobs.status import AuditAction
from jobs.store import repo
from jobs.store.repo.pages import CURSOR_DESCRIPTION, CURSOR_PATTERN

__all__ = ["router"]

router = APIRouter(
    prefix="/v1/audit",
    tags=["audit"],
    responses={
        **auth_responses(),
        403: problem_doc("the key is not admin-scoped"),
        422: problem_doc("invalid field(s), each named in `errors`"),
    },
)


@router.get("", response_model=AuditPage)
def list_audit(
    session: SessionDep,
    admin: AdminDep,
    action: Annotated[AuditAction | None, Query(description="only this action")] = None,
    since: Annotated[Time | None, Query(description="only events at or after it")] = None,
    until: Annotated[Time | None, Query(description="only events before it")] = None,
    limit: Annotated[int, Query(ge=1, le=200, description="page size"), Digits] = 50,
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
