"""Every error leaves as ``application/problem+json`` (RFC 9457), written once here.

Bodies carry ``type``, ``title``, ``status``, ``detail`` and, for validation errors,
``errors``: one entry per bad field with its dotted path (``hypergradient.K``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from jobs.specs.job import field_errors

__all__ = ["PROBLEM_JSON", "ProblemError", "install_error_handlers", "problem_response"]

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger(__name__)


class ProblemError(Exception):
    """Raise in a route to answer with a problem document.

    Args:
        status: the HTTP status.
        detail: what went wrong, for a person: echo the bad value.
        slug: the problem's type, as ``/problems/<slug>``; ``about:blank`` when omitted.
        title: a short summary; the status's phrase when omitted.
        headers: extra response headers (``Retry-After``, ``WWW-Authenticate``).
        **extra: more members of the problem document (``errors``, ``limit``, ...).
    """

    headers: Mapping[str, str] | None

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        slug: str | None = None,
        title: str | None = None,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ):
        super().__init__(detail)
        self.status, self.detail, self.slug = status, detail, slug
        self.title, self.headers, self.extra = title, headers, extra


def problem_response(
    status: int,
    detail: str,
    *,
    slug: str | None = None,
    title: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """A problem document (RFC 9457) as an ``application/problem+json`` response.

    Args:
        status: the HTTP status.
        detail: what went wrong, for a person.
        slug: the problem's type, as ``/problems/<slug>``; ``about:blank`` when omitted.
        title: a short summary; the status's phrase when omitted.
        headers: extra response headers.
        **extra: more members of the document.

    Returns:
        The response, ready to send.
    """
    phrase = HTTPStatus(status).phrase
    body = {
        "type": f"/problems/{slug}" if slug else "about:blank",
        "title": title or phrase,
        "status": status,
        "detail": detail,
        **extra,
    }
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def _validation(errors: list[dict[str, Any]]) -> JSONResponse:
    fields = ", ".join(e["field"] for e in errors)
    return problem_response(
        422,
        f"{len(errors)} invalid field(s): {fields}",
        slug="validation-error",
        title="Invalid request",
        errors=errors,
    )


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def _allowed_methods(request: Request) -> str:
    """Every method the path answers: Starlette's 405 names only the first matching route's."""
    routes = request.app.router.routes
    return ", ".join(
        m for m in _METHODS
        if any(r.matches({**request.scope, "method": m})[0] is Match.FULL for r in routes)
    )  # fmt: skip


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error of ``app`` with a problem document.

    Covers a raised :class:`ProblemError`, HTTP errors (404, 405 with every allowed method),
    request validation (422 naming each field), an unavailable store (503 with
    ``Retry-After``) and anything unexpected (500, logged).
    """

    @app.exception_handler(ProblemError)
    async def _problem(_: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(
            exc.status,
            exc.detail,
            slug=exc.slug,
            title=exc.title,
            headers=exc.headers,
            **exc.extra,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        headers = exc.headers
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": _allowed_methods(request)}
        if exc.status_code == 400:
            # FastAPI's answer to a body it cannot decode (not UTF-8): an invalid body like
            # malformed JSON, so the documented 422
            return _validation([{"field": "(body)", "loc": [], "type": "json_invalid",
                                 "message": f"the body cannot be decoded: {detail}"}])  # fmt: skip
        return problem_response(exc.status_code, detail, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _request_validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation(field_errors(exc.errors()))

    @app.exception_handler(ValidationError)
    async def _model_validation(_: Request, exc: ValidationError) -> JSONResponse:
        return _validation(field_errors(exc))

    @app.exception_handler(OperationalError)
    @app.exception_handler(DBAPIError)
    async def _database(_: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable: %s", exc)
        return problem_response(
            503,
            "the job store is unavailable; retry shortly",
            slug="store-unavailable",
            headers={"Retry-After": "2"},
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return problem_response(500, "internal error", slug="internal-error")
