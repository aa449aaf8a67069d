"""A pure ASGI middleware that bounds request bodies (413 problem+json beyond the limit).

A declared ``Content-Length`` over the limit is refused before a byte of the body is read;
a chunked (or under-declared) body is counted as it streams in and refused as soon as it
grows past the limit, so nothing ever buffers more than ``max_bytes``.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import ProblemError, problem_response

__all__ = ["BodyLimitMiddleware", "BodyTooLarge"]


class BodyTooLarge(ProblemError, HTTPException):
    """Raised from ``receive`` when the body passes the limit.

    Also an ``HTTPException``, because FastAPI turns any other error met while reading a
    body into a 400; the ``ProblemError`` handler (first in the MRO) writes the 413.
    """

    def __init__(self, limit: int, setting: str = "max_body_bytes"):
        detail = f"the streamed body is over the limit of {limit} bytes ({setting})"
        HTTPException.__init__(self, 413, detail)
        # ProblemError's fields, set here: its __init__ would call HTTPException's via super()
        self.status, self.slug, self.title, self.extra = 413, "body-too-large", None, {}


class BodyLimitMiddleware:
    """Answer 413 to any HTTP request whose body is longer than ``max_bytes``.

    ``overrides`` maps ``(method, path)`` to a limit and the setting that names it, for the
    few routes that take files (``POST /v1/datasets``) and enforce their own limit as they
    stream.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        overrides: dict[tuple[str, str], tuple[int, str]] | None = None,
    ):
        self.app, self.max_bytes = app, max_bytes
        self.overrides = overrides or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on with a ``receive`` that counts the body's bytes."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, setting = self.overrides.get(
            (scope.get("method", ""), scope.get("path", "")), (self.max_bytes, "max_body_bytes")
        )
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await self._refuse(
                scope, receive, send, f"Content-Length {declared} is", limit, setting
            )
            return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit, setting)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            # reached only when nothing inside turned it into a response
            if started:
                raise
            await self._refuse(scope, receive, send, "the streamed body is", limit, setting)

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, what: str, limit: int, setting: str
    ) -> None:
        response = problem_response(
            413,
            f"{what} over the limit of {limit} bytes ({setting})",
            slug="body-too-large",
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
