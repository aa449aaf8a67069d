"""Sending a :class:`~client._calls.Call`: retries, and error answers as exceptions.

A call is sent again, after 0.5 s, 1 s, 2 s..., when the connection failed before the
request left (any call), when it failed midway and the call is safe to resend (a read, or a
create with its ``Idempotency-Key``: the server answers the retry with the first object),
and when the server answers 503 (its store is away) with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from client._calls import UPLOAD_READ_TIMEOUT_S, Call
from client.errors import ApiError, ServiceUnreachable

if TYPE_CHECKING:
    import httpx

__all__ = ["send", "send_async"]

T = TypeVar("T")
_BACKOFF_S = 0.5
_MAX_WAIT_S = 10.0


def _error(r: httpx.Response) -> ApiError:
    try:
        body = r.json()
    except ValueError:
        body = None
    return ApiError(r.status_code, body if isinstance(body, dict) else {}, r.text)


def _wait_s(attempt: int, r: httpx.Response | None) -> float:
    after = r.headers.get("Retry-After") if r is not None else None
    if after and after.isdigit():
        return min(float(after), _MAX_WAIT_S)
    return min(_BACKOFF_S * 2.0**attempt, _MAX_WAIT_S)


def _retry(call: Call[Any], exc: Exception | None, r: httpx.Response | None) -> bool:
    import httpx

    if r is not None:
        return r.status_code == 503
    return isinstance(exc, httpx.ConnectError) or (
        call.safe and isinstance(exc, httpx.TransportError)
    )


def _kwargs(call: Call[Any]) -> dict[str, Any]:
    import httpx

    kw: dict[str, Any] = {"params": call.params, "headers": dict(call.headers)}
    if call.long_read:
        kw["timeout"] = httpx.Timeout(30.0, read=UPLOAD_READ_TIMEOUT_S, write=None)
    return kw


def _body(call: Call[Any]) -> bytes | Iterable[bytes] | None:
    return call.body() if callable(call.body) else call.body


def send(http: httpx.Client, call: Call[T], retries: int) -> T:
    """The parsed answer to ``call``, sent on ``http`` with up to ``retries`` retries.

    Raises:
        ApiError: the server answered an error status.
        ServiceUnreachable: no answer after the retries.
    """
    import httpx

    for attempt in range(retries + 1):
        r, exc = None, None
        try:
            r = http.request(call.method, call.path, content=_body(call), **_kwargs(call))
        except httpx.TransportError as e:
            exc = e
        if attempt < retries and _retry(call, exc, r):
            time.sleep(_wait_s(attempt, r))
            continue
        return _finish(http.base_url, call, r, exc)
    raise AssertionError("unreachable")  # the loop returns at its last attempt


async def _aiter(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def send_async(http: httpx.AsyncClient, call: Call[T], retries: int) -> T:
    """:func:`send` for an ``httpx.AsyncClient``."""
    import httpx

    for attempt in range(retries + 1):
        r, exc = None, None
        body = _body(call)
        content = _aiter(body) if body is not None and not isinstance(body, bytes) else body
        try:
            r = await http.request(call.method, call.path, content=content, **_kwargs(call))
        except httpx.TransportError as e:
            exc = e
        if attempt < retries and _retry(call, exc, r):
            await asyncio.sleep(_wait_s(attempt, r))
            continue
        return _finish(http.base_url, call, r, exc)
    raise AssertionError("unreachable")


def _finish(base: Any, call: Call[T], r: httpx.Response | None, exc: Exception | None) -> T:
    if r is None:
        raise ServiceUnreachable(f"cannot reach {base}: {exc}") from exc
    if r.status_code >= 400:
        raise _error(r)
    parse: Callable[[httpx.Response], T] = call.parse
    return parse(r)
