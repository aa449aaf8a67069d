"""Dependencies of the routes, as ``Annotated`` aliases (``SessionDep``, ``TeamDep``, ...).

``PrincipalDep`` authenticates the Bearer key and then spends one token of the key's rate
limit; ``TeamDep`` is its team (every job route scopes its queries to it) and ``AdminDep``
also requires the key's ``admin`` scope (key management).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from api.errors import ProblemError
from api.settings import ApiSettings
from jobs import repo
from jobs.dispatch import Dispatcher
from jobs.models import Team

__all__ = ["AdminDep", "DispatcherDep", "PrincipalDep", "SessionDep", "SettingsDep", "TeamDep"]

_bearer = HTTPBearer(auto_error=False, description="an API key: `Authorization: Bearer blv_...`")


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def get_settings(request: Request) -> ApiSettings:
    return request.app.state.settings


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]


def get_dispatcher(request: Request) -> Dispatcher:
    return request.app.state.dispatcher


DispatcherDep = Annotated[Dispatcher, Depends(get_dispatcher)]


def get_principal(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> repo.Principal:
    """The Bearer key's principal; 401 when missing, unknown or revoked, 429 when throttled."""
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ProblemError(
            401, "missing API key: send Authorization: Bearer <key>", slug="unauthorized",
            headers=challenge,
        )  # fmt: skip
    principal = repo.verify_key(
        session, credentials.credentials, secret=request.app.state.key_secret
    )
    if principal is None:
        raise ProblemError(
            401, "invalid or revoked API key", slug="unauthorized", headers=challenge
        )
    if principal.rehashed:
        session.commit()  # the legacy SHA-256 row now holds the keyed hash
    # after authentication: an unknown caller must not spend a real key's budget
    decision = request.app.state.rate_limiter.take(principal.prefix)
    if not decision.allowed:
        settings = request.app.state.settings
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


def get_team(principal: PrincipalDep) -> Team:
    """The team of the Bearer API key."""
    return principal.team


TeamDep = Annotated[Team, Depends(get_team)]


def get_admin(principal: PrincipalDep) -> repo.Principal:
    """The principal of an ``admin``-scoped key; 403 for a ``team`` key."""
    if not principal.admin:
        raise ProblemError(
            403,
            f"key {principal.prefix} has scope {principal.scope!r}; managing keys needs an "
            "admin key (bilevel keys create --admin)",
            slug="forbidden",
        )
    return principal


AdminDep = Annotated[repo.Principal, Depends(get_admin)]
