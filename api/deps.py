"""Dependencies of the routes, as ``Annotated`` aliases (``SessionDep``, ``TeamDep``, ...).

``PrincipalDep`` authenticates the Bearer key and then spends one token of the key's rate
limit; ``TeamDep`` is its team (every job route scopes its queries to it) and ``AdminDep``
also requires the key's ``admin`` scope (key management).

Every dependency here is ``async def``: FastAPI runs a plain ``def`` dependency in the thread
pool, a hop that cost more than the work in these. What does block (a store query on a key
cache miss, closing a session that holds a connection) is sent to the pool explicitly; a
request's route function then runs its queries in one more hop, on the request's one session.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.errors import ProblemError
from api.settings import ApiSettings
from jobs import keys
from jobs.dispatch import Dispatcher
from jobs.store import repo

__all__ = ["AdminDep", "DispatcherDep", "PrincipalDep", "SessionDep", "SettingsDep", "TeamDep"]

_bearer = HTTPBearer(auto_error=False, description="an API key: `Authorization: Bearer blv_...`")


async def get_session(request: Request) -> AsyncIterator[Session]:
    """The request's one session; made without touching the store, so no hop to open it.

    GET and HEAD requests read in autocommit (``api.main._autocommit``): no BEGIN, no
    ROLLBACK, one round trip per query.
    """
    state = request.app.state
    autocommit = request.method in ("GET", "HEAD") and state.read_sessions is not state.sessions
    session = state.read_sessions() if autocommit else state.sessions()
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


def _verify(
    session: Session, key: str, secret: bytes, previous: bytes | None
) -> repo.Principal | None:
    principal = repo.verify_key(session, key, secret=secret, previous=previous)
    if principal is not None and principal.rehashed:
        session.commit()  # the row now holds the keyed hash under the current secret
    return principal


async def get_principal(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> repo.Principal:
    """The Bearer key's principal; 401 when missing, unknown or revoked, 429 when throttled.

    A client address with ``auth_failure_limit`` wrong keys in its window gets 429 before its
    key is looked at (``api.authfailures``), whatever key it sends.

    A key verified less than ``key_cache_ttl_s`` ago in this process is taken from the
    key cache (by its HMAC digest) without a query: a revocation made by another process
    takes effect here within that bound.
    """
    state = request.app.state
    address = request.client.host if request.client else ""
    blocked_s = state.auth_failures.retry_after(address)
    if blocked_s:
        settings: ApiSettings = state.settings
        raise ProblemError(
            429,
            f"too many failed authentications from {address}: {settings.auth_failure_limit} "
            f"in {settings.auth_failure_window_s:g} s (auth_failure_limit, "
            f"auth_failure_window_s); retry in {blocked_s} s",
            slug="auth-throttled",
            headers={"Retry-After": str(blocked_s)},
        )
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ProblemError(
            401, "missing API key: send Authorization: Bearer <key>", slug="unauthorized",
            headers=challenge,
        )  # fmt: skip
    key = credentials.credentials
    digest = keys.hash_key(key, keys.HMAC_SHA256, state.key_secret)
    principal: repo.Principal | None = state.key_cache.get(digest)
    if principal is None:
        principal = await run_in_threadpool(
            _verify, session, key, state.key_secret, state.key_previous_secret
        )
        if principal is None:
            state.auth_failures.failed(address)
            raise ProblemError(
                401, "invalid or revoked API key", slug="unauthorized", headers=challenge
            )
        state.key_cache.put(digest, principal.prefix, principal)
    # after authentication: an unknown caller must not spend a real key's budget
    decision = await state.rate_limiter.atake(principal.prefix)
    if not decision.allowed:
        settings = state.settings
        raise ProblemError(
            429,
            f"rate limit of key {principal.prefix} exceeded: {settings.rate_limit_per_s:g} "
            f"requests/s with bursts of {settings.rate_limit_burst} (rate_limit_per_s, "
            f"rate_limit_burst); retry in {decision.retry_after_s} s",
            slug="rate-limited",
            headers={"Retry-After": str(decision.retry_after_s)},
        )
    return principal


PrincipalDep = Annotated[repo.Principal, Depends(get_principal)]


async def get_team(principal: PrincipalDep) -> repo.TeamRef:
    """The team of the Bearer API key."""
    return principal.team


TeamDep = Annotated[repo.TeamRef, Depends(get_team)]


async def get_admin(principal: PrincipalDep) -> repo.Principal:
    """The principal of an ``admin``-scoped key; 403 for a ``team`` key."""
    if not principal.admin:
        raise ProblemError(
            403,
            f"key {principal.prefix} has scope {principal.scope!r}; managing keys, teams and "
            "webhooks, and reading the audit, need an admin key (bilevel keys create --admin)",
            slug="forbidden",
        )
    return principal


AdminDep = Annotated[repo.Principal, Depends(get_admin)]
