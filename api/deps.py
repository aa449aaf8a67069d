"""Dependencies of the routes, as ``Annotated`` aliases (``SessionDep``, ``TeamDep``)."""

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

__all__ = ["DispatcherDep", "SessionDep", "SettingsDep", "TeamDep"]

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


def get_team(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Team:
    """The team of the Bearer API key; 401 problem when missing, unknown or revoked."""
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ProblemError(
            401, "missing API key: send Authorization: Bearer <key>", slug="unauthorized",
            headers=challenge,
        )  # fmt: skip
    team = repo.authenticate(session, credentials.credentials)
    if team is None:
        raise ProblemError(
            401, "invalid or revoked API key", slug="unauthorized", headers=challenge
        )
    return team


TeamDep = Annotated[Team, Depends(get_team)]
