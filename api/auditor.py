"""``AuditDep``: who a request acts as, and its refused cross-team accesses.

The store functions that change what an admin controls record the change themselves, in its
transaction (``jobs.store.repo.audit``); a route hands them :attr:`Auditor.actor`. The
helpers that answer 404 for an object the key's team cannot see build that 404 with
:meth:`Auditor.not_found`, which records the attempt when the object exists but is another
team's: a refusal never reaches a store function, so it is the API's to record.

A refused cross-team access is one row, ``access.denied``, with the prober as the acting
team and the owner as ``target_team_id``: the prober's team sees its own attempt in full,
the owner sees that the prober's team tried (without the prober's key or address, see
``api.routes.audit``), and a third team sees nothing.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.orm import InstrumentedAttribute, Session

from api.deps import PrincipalDep, SessionDep, actor_of
from api.errors import ProblemError
from jobs.status import AuditAction, AuditTarget
from jobs.store import repo

__all__ = ["AuditDep", "Auditor"]


class Auditor:
    """The request's principal and client, ready to record audit events in its session.

    Args:
        session: the request's session.
        principal: the authenticated key.
        request: the request; :attr:`actor` is its key with the client's address
            (``request.client.host``; behind a proxy, the one uvicorn's ``--proxy-headers``
            takes from ``X-Forwarded-For``) and ``User-Agent`` (``api.deps.actor_of``).
    """

    def __init__(self, session: Session, principal: repo.Principal, request: Request):
        self.session, self.principal, self._request = session, principal, request

    @functools.cached_property
    def actor(self) -> repo.Actor:
        """The acting key and client (made when first asked: most reads record nothing)."""
        return actor_of(self._request, self.principal)

    def not_found(
        self, target_type: str, column: InstrumentedAttribute[Any], value: Any
    ) -> ProblemError:
        """The 404 for an object this team cannot see, audited when another team owns it.

        Args:
            target_type: the kind of object, for the event and the message (``job``).
            column: the column the route looked the object up by (``Job.id``).
            value: the value it looked up.

        Returns:
            The error to raise; when another team owns the object, an ``access.denied``
            event has been committed (the 404 must not roll it back).
        """
        owner = repo.owning_team(self.session, column, value)
        if owner is not None and owner != self.principal.team.id:
            target = AuditTarget(target_type)
            repo.record_event(self.session, self.actor, AuditAction.ACCESS_DENIED, target,
                              str(value), target_team_id=owner)  # fmt: skip
            self.session.commit()
        # another team's object is indistinguishable from a missing one
        return ProblemError(404, f"no {target_type} {value}", slug="not-found")


async def get_auditor(request: Request, session: SessionDep, principal: PrincipalDep) -> Auditor:
    """The request's :class:`Auditor` (its key, client address and user agent)."""
    return Auditor(session, principal, request)


AuditDep = Annotated[Auditor, Depends(get_auditor)]
