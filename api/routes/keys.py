"""``/v1/keys``: list, create and revoke the team's API keys (admin-scoped keys only).

A key of another team is indistinguishable from a missing one (404), as for jobs. The
team's last unrevoked admin key cannot be revoked (409): without one nobody could manage
the team's keys again through the API. Creating and revoking are audited. An ``operator``
key is never made here (403, audited): only ``bilevel keys create --operator`` on the
server makes one, so no key the API hands out can raise itself above its team.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from starlette.concurrency import run_in_threadpool

from api.auditor import AuditDep
from api.deps import AdminDep, SessionDep, forbidden
from api.errors import ProblemError
from api.openapi import auth_responses, links_to, problem_doc
from api.schemas.keys import KeyCreate, KeyCreated, KeyPublic, KeysPublic
from jobs.status import KeyScope
from jobs.store import repo
from jobs.store.models import ApiKey

router = APIRouter(
    prefix="/v1/keys",
    tags=["keys"],
    responses={
        **auth_responses(),
        403: problem_doc("the key is not admin-scoped (or asks for an operator key)"),
    },
)

Prefix = Annotated[str, Path(pattern=r"^[0-9a-f]{1,16}$", description="the key's prefix")]


@router.get("", response_model=KeysPublic)
def list_keys(session: SessionDep, admin: AdminDep) -> KeysPublic:
    """List the team's keys (prefix, name, scope, created, revoked), oldest first."""
    rows = repo.list_api_keys(session, team_id=admin.team.id)
    return KeysPublic(data=[KeyPublic.of(k) for k, _ in rows], count=len(rows))


@router.post("", status_code=201, response_model=KeyCreated,
             responses={201: {"links": links_to("/v1/keys/{prefix}", "prefix", "prefix",
                                                {"RevokeKey": ("", "delete")})},
                        413: problem_doc("request body over the limit (max_body_bytes)"),
                        422: problem_doc("invalid field(s), each named in `errors`")})  # fmt: skip
async def create_key(
    body: KeyCreate,
    request: Request,
    session: SessionDep,
    admin: AdminDep,
    response: Response,
    audit: AuditDep,
) -> KeyCreated:
    """Create a key for the team; its plaintext is in this response only."""
    if body.scope == KeyScope.OPERATOR:
        raise await forbidden(
            request, session, admin,
            "operator keys are made only on the server (bilevel keys create --operator), "
            f"not through the API; got scope {body.scope.value!r}",
        )  # fmt: skip
    secret = request.app.state.key_secret

    def create() -> KeyCreated:
        row, key = repo.create_api_key(
            session, admin.team, body.name, secret=secret, scope=body.scope, actor=audit.actor
        )
        session.commit()
        return KeyCreated(**KeyPublic.of(row).model_dump(), key=key)

    created = await run_in_threadpool(create)
    response.headers["Cache-Control"] = "no-store"  # the plaintext must not be cached
    return created


@router.delete(
    "/{prefix}",
    response_model=KeyPublic,
    responses={
        404: problem_doc("no such key for this team"),
        409: problem_doc("the team's last admin key: create another admin key first"),
        422: problem_doc("a malformed prefix"),
    },
)
def revoke_key(
    prefix: Prefix, request: Request, session: SessionDep, admin: AdminDep, audit: AuditDep
) -> KeyPublic:
    """Revoke one of the team's keys (idempotent: a revoked key stays revoked).

    The team's last unrevoked admin key is refused with 409: revoking it would leave nobody
    able to manage the team's keys.
    """
    row = repo.get_api_key(session, prefix, team_id=admin.team.id)
    if row is None:
        raise audit.not_found("key", ApiKey.prefix, prefix)
    try:
        # the repo refuses the last admin key, so the CLI (straight on the store) does too
        # a key revoked before stays revoked, and is not audited again
        repo.revoke_api_key(session, prefix, team_id=admin.team.id, actor=audit.actor)
    except repo.LastAdminKey as exc:
        raise ProblemError(409, str(exc), slug="last-admin-key", title="Last admin key") from None
    session.commit()
    # at once in this process; other API processes drop it within key_cache_ttl_s
    request.app.state.key_cache.forget_prefix(prefix)
    session.refresh(row)
    return KeyPublic.of(row)
