"""A pure ASGI middleware that says how long the app took: ``Server-Timing: app;dur=<ms>``.

A latency a client measures is the app's time plus everything around it: the request
waiting in the listen queue and in uvicorn's event loop, the response waiting for the
client's own loop. On a busy machine the app's share is the one figure the client cannot
see, so every HTTP response carries it (W3C Server Timing; a browser's network panel shows
it, and ``benchmarks.service.load`` splits its slow polls with it). Measured from the
moment the request reaches the app to the moment its response headers leave: a streamed
body's time after that is not in it.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["ServerTimingMiddleware", "app_duration_ms"]

_HEADER = b"server-timing"


class ServerTimingMiddleware:
    """Add ``Server-Timing: app;dur=<ms>`` (three decimals) to every HTTP response."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on with a ``send`` that stamps the response's start."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                ms = (time.perf_counter() - t0) * 1e3
                headers = list(message.get("headers", ()))
                headers.append((_HEADER, b"app;dur=%.3f" % ms))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, timed_send)


def app_duration_ms(header: str | None) -> float | None:
    """The ``app`` metric's ``dur`` in a ``Server-Timing`` header value; ``None`` if absent."""
    for metric in (header or "").split(","):
        name, _, params = metric.strip().partition(";")
        if name.strip() != "app":
            continue
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "dur":
                try:
                    return float(value)
                except ValueError:
                    return None
    return None
