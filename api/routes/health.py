"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request

from api.errors import ProblemError
from api.openapi import problem_doc
from api.schemas.health import Health, Readiness
from jobs import repo

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get(
    "/readyz",
    responses={503: problem_doc("the database or the broker does not answer")},
)
def readyz(request: Request) -> Readiness:
    """The database and the broker (or embedded executor) answer."""
    checks = {}
    try:
        with request.app.state.sessions() as s:
            repo.ping_store(s)
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    checks["broker"] = "ok" if request.app.state.dispatcher.ping() else "unreachable"
    if any(v != "ok" for v in checks.values()):
        raise ProblemError(503, "not ready", slug="not-ready", checks=checks)
    return Readiness(status="ok", **checks)
