"""The ``Idempotency-Key`` header of the create routes (jobs, studies, data sets).

A client that lost the answer to a create retries it with the same key: the first resource
comes back (201, ``Idempotent-Replayed: true``) instead of a second one; the same key with
another body is refused (409 ``idempotency-conflict``). The store keeps the key with the
resource, unique per team, and the digest of the body as sent (:data:`RequestDigest`), so
the retry is recognised by what the client sent, not by one release's reading of it
(``jobs.store.repo.idempotency``).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import Depends, Header, Request, Response

from api.errors import ProblemError
from api.openapi import problem_doc
from jobs.store import repo

__all__ = ["CONFLICT_DOC", "IdempotencyKey", "RequestDigest", "conflict", "mark_replayed"]

#: the header parameter (documented in the OpenAPI, so schemathesis sends it)
IdempotencyKey = Annotated[
    str | None,
    Header(
        max_length=200,
        description="a retried create with this key returns the first resource (201, "
        "Idempotent-Replayed: true) instead of a second; with another body, 409",
    ),
]


async def _request_digest(request: Request) -> str | None:
    """The digest of a keyed request's JSON body as sent (``None`` without a key)."""
    if "idempotency-key" not in request.headers:
        return None
    try:  # the body FastAPI has read already (Starlette keeps it); it parsed, so this does
        body = json.loads(await request.body())
    except ValueError:
        return None
    return repo.request_digest(body)


#: the create's body digest (``jobs.store.repo.request_digest``), for the store to keep
RequestDigest = Annotated[str | None, Depends(_request_digest)]

#: the 409 of a key reused with another body, for a route's ``responses``
CONFLICT_DOC: dict[str, Any] = problem_doc("Idempotency-Key reused with another body")


def conflict(exc: repo.IdempotencyConflict) -> ProblemError:
    """The 409 ``idempotency-conflict`` naming what the key was first used for."""
    return ProblemError(409, str(exc), slug="idempotency-conflict", title="Idempotency conflict")


def mark_replayed(response: Response) -> None:
    """Say that this 201 is the first create's resource, not a new one."""
    response.headers["Idempotent-Replayed"] = "true"
