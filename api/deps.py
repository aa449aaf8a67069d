"""Dependencies of the routes, as ``Annotated`` aliases (``SessionDep``, ``TeamDep``, ...).

``PrincipalDep`` authenticates the Bearer key and then spends one token of the key's rate
limit; ``TeamDep`` is its team (every job route scopes its queries to it), ``AdminDep``
also requires the key's ``admin`` (or ``operator``) scope (key management) and
``OperatorDep`` the ``operator`` scope (the pool's settings). A key refused for its scope
gets a 403 that is audited (``access.denied``, :func:`forbidden`).

Every dependency here is ``async def``: FastAPI runs a plain ``def`` dependency in the thread
pool, a hop that cost more than the work in these. What does block (a store query on a key
cache miss, closing a session that holds a connection) is sent to the pool explicitly; a
request's route function then runs its queries in one more hop, on the request's one session.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.errors import ProblemError
from api.ratelimit import Decision, take_unless_blocked
from api.settings import ApiSettings
from jobs import keys
from jobs.dispatch import Dispatcher
from jobs.status import AuditAction, AuditTarget
from jobs.store import repo

__all__ = [
    "AdminDep",
    "DispatcherDep",
    "OperatorDep",
    "PrincipalDep",
    "SessionDep",
    "SettingsDep",
    "TeamDep",
    "actor_of",
    "bearer_credentials",
    "forbidden",
    "get_principal",
    "refuse_if_throttled",
]

_bearer = HTTPBearer(auto_error=False, description="an API key: `Authorization: Bearer blv_...`")
#: the ``Authorization: Bearer`` header, if any (not an error when missing)
bearer_credentials = _bearer


def open_session(request: Request) -> tuple[Session, bool]:
    """A session for ``request``, made without touching the store; and if it autocommits.

    GET and HEAD requests read in autocommit (``api.main._autocommit``): no BEGIN, no
    ROLLBACK, one round trip per query. The polled routes open theirs with this in their own
    thread (``with``), outside the dependencies: a generator dependency costs FastAPI an exit
    stack per request, ~16% of a poll's CPU as profiled.
    """
    state = request.app.state
    autocommit = request.method in ("GET", "HEAD") and state.read_sessions is not state.sessions
    return (state.read_sessions() if autocommit else state.sessions()), autocommit


async def get_session(request: Request) -> AsyncIterator[Session]:
    """The request's one session (:func:`open_session`), closed after the response."""
    session, autocommit = open_session(request)
    try:
        yield session
    finally:
        # giving back a connection in a transaction sends ROLLBACK: I/O, so in the pool;
        # an autocommit one has nothing to roll back, so it goes back from here
        if session.in_transaction() and not autocommit:
            await run_in_threadpool(session.close)
        else:
            session.close()


SessionDep = Annotated[Session, Depends(get_session)]


async def get_settings(request: Request) -> ApiSettings:
    """The app's settings, read once by ``create_app``."""
    settings: ApiSettings = request.app.state.settings
    return settings


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]


async def get_dispatcher(request: Request) -> Dispatcher:
    """How the app sends committed jobs to the workers."""
    dispatcher: Dispatcher = request.app.state.dispatcher
    return dispatcher


DispatcherDep = Annotated[Dispatcher, Depends(get_dispatcher)]


def _verify(request: Request, key: str) -> repo.Principal | None:
    state = request.app.state
    with state.sessions() as session:  # its own: most requests find the key cached
        principal = repo.verify_key(
            session, key, secret=state.key_secret, previous=state.key_previous_secret
        )
        if principal is not None and principal.rehashed:
            session.commit()  # the row now holds the keyed hash under the current secret
    return principal


def _throttled(settings: ApiSettings, address: str, blocked_s: int) -> ProblemError:
    return ProblemError(
        429,
        f"too many failed authentications from {address}: {settings.auth_failure_limit} "
        f"in {settings.auth_failure_window_s:g} s (auth_failure_limit, "
        f"auth_failure_window_s); retry in {blocked_s} s",
        slug="auth-throttled",
        headers={"Retry-After": str(blocked_s)},
    )


def _rate_limited(settings: ApiSettings, prefix: str, decision: Decision) -> ProblemError:
    return ProblemError(
        429,
        f"rate limit of key {prefix} exceeded: {settings.rate_limit_per_s:g} "
        f"requests/s with bursts of {settings.rate_limit_burst} (rate_limit_per_s, "
        f"rate_limit_burst); retry in {decision.retry_after_s} s",
        slug="rate-limited",
        headers={"Retry-After": str(decision.retry_after_s)},
    )


def _address(request: Request) -> str:
    return request.client.host if request.client else ""


async def refuse_if_throttled(request: Request) -> str:
    """The client's address; 429 when it has spent its failed authentications.

    Raises:
        ProblemError: 429 ``auth-throttled`` with ``Retry-After`` (``api.authfailures``).
    """
    state = request.app.state
    address = _address(request)
    blocked_s = await state.auth_failures.aretry_after(address)
    if blocked_s:
        raise _throttled(state.settings, address, blocked_s)
    return address


async def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> repo.Principal:
    """The Bearer key's principal; 401 when missing, unknown or revoked, 429 when throttled.

    A client address with ``auth_failure_limit`` wrong keys in its window gets 429 before its
    key is looked at (``api.authfailures``), whatever key it sends.

    A key verified less than ``key_cache_ttl_s`` ago in this process is taken from the
    key cache (by its HMAC digest) without a query: a revocation made by another process
    takes effect here within that bound. Such a key's request then asks the address's
    failed authentications and spends its token in one Redis round trip
    (``api.ratelimit.take_unless_blocked``), in the same order as below.
    """
    state = request.app.state
    digest = ""
    if credentials is not None and credentials.scheme.lower() == "bearer":
        digest = keys.hash_key(credentials.credentials, keys.HMAC_SHA256, state.key_secret)
        cached: repo.Principal | None = state.key_cache.get(digest)
        if cached is not None:
            address = _address(request)
            blocked_s, decision = await take_unless_blocked(
                state.rate_limiter, state.auth_failures, cached.prefix, address
            )
            if blocked_s:
                raise _throttled(state.settings, address, blocked_s)
            if not decision.allowed:
                raise _rate_limited(state.settings, cached.prefix, decision)
            return cached
    address = await refuse_if_throttled(request)
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ProblemError(
            401, "missing API key: send Authorization: Bearer <key>", slug="unauthorized",
            headers=challenge,
        )  # fmt: skip
    key = credentials.credentials
    principal = await run_in_threadpool(_verify, request, key)
    if principal is None:
        await state.auth_failures.afailed(address)
        raise ProblemError(
            401, "invalid or revoked API key", slug="unauthorized", headers=challenge
        )
    state.key_cache.put(digest, principal.prefix, principal)
    # after authentication: an unknown caller must not spend a real key's budget
    decision = await state.rate_limiter.atake(principal.prefix)
    if not decision.allowed:
        raise _rate_limited(state.settings, principal.prefix, decision)
    return principal


PrincipalDep = Annotated[repo.Principal, Depends(get_principal)]


async def get_team(principal: PrincipalDep) -> repo.TeamRef:
    """The team of the Bearer API key."""
    return principal.team


TeamDep = Annotated[repo.TeamRef, Depends(get_team)]


def actor_of(request: Request, principal: repo.Principal) -> repo.Actor:
    """Who a request acts as, for the audit: its key, client address and user agent."""
    client = request.client
    return repo.Actor(
        team_id=principal.team.id,
        key_id=principal.key_id,
        key_prefix=principal.prefix,
        key_name=principal.name,
        address=client.host if client else None,
        user_agent=request.headers.get("user-agent"),
    )


def _record_refusal(
    session: Session, actor: repo.Actor, target: AuditTarget, target_id: str,
    target_team_id: uuid.UUID | None,
) -> None:  # fmt: skip
    repo.record_event(session, actor, AuditAction.ACCESS_DENIED, target, target_id,
                      target_team_id=target_team_id)  # fmt: skip
    session.commit()


async def forbidden(
    request: Request,
    session: Session,
    principal: repo.Principal,
    detail: str,
    *,
    target: AuditTarget = AuditTarget.ENDPOINT,
    target_id: str | None = None,
    target_team_id: uuid.UUID | None = None,
) -> ProblemError:
    """The 403 for ``principal``, after recording the refusal (``access.denied``).

    Args:
        request: the refused request.
        session: the request's session; the event is committed in it.
        principal: the refused key.
        detail: the problem's detail (what the key's scope lacks).
        target: the kind of object refused; by default the route itself (``endpoint``).
        target_id: the object's id; by default ``<METHOD> <route path>``.
        target_team_id: the team owning the object, when it is not the key's.
    """
    if target_id is None:
        route = request.scope.get("route")
        target_id = f"{request.method} {getattr(route, 'path', request.url.path)}"
    if target_team_id == principal.team.id:
        target_team_id = None
    await run_in_threadpool(_record_refusal, session, actor_of(request, principal), target,
                            target_id[:200], target_team_id)  # fmt: skip
    return ProblemError(403, detail, slug="forbidden")


async def get_admin(
    request: Request, session: SessionDep, principal: PrincipalDep
) -> repo.Principal:
    """The principal of an ``admin`` or ``operator`` key; 403 (audited) for a ``team`` key."""
    if not principal.admin:
        raise await forbidden(
            request, session, principal,
            f"key {principal.prefix} has scope {principal.scope!r}; managing keys and "
            "webhooks, and reading the audit, need an admin key (bilevel keys create --admin)",
        )  # fmt: skip
    return principal


AdminDep = Annotated[repo.Principal, Depends(get_admin)]


async def get_operator(
    request: Request, session: SessionDep, principal: PrincipalDep
) -> repo.Principal:
    """The principal of an ``operator`` key; 403 (audited) for any other."""
    if not principal.operator:
        raise await forbidden(
            request, session, principal,
            f"key {principal.prefix} has scope {principal.scope!r}; this needs the pool "
            "operator's key (made on the server: bilevel keys create --operator)",
        )  # fmt: skip
    return principal


OperatorDep = Annotated[repo.Principal, Depends(get_operator)]
