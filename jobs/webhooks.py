"""Webhooks: where they may point, how events are signed, and what an event holds.

Every event is a JSON POST with three headers:

- ``Bilevel-Event``: its type (``job.succeeded``, ``job.failed``, ``job.cancelled``,
  ``job.pruned``, ``study.succeeded``, ...);
- ``Bilevel-Delivery``: the event's id, the same on every retry (a receiver dedupes on it);
- ``Bilevel-Signature: t=<unix seconds>,v1=<hex>``, ``hex = HMAC-SHA256(secret, "<t>.<body>")``
  with the webhook's secret. The timestamp is inside the MAC, so a receiver that also checks
  it is recent (:func:`verify`'s ``tolerance_s``) refuses replays of old deliveries.

Outbound requests only go to addresses the operator allowed (``webhook_allow``: networks in
CIDR notation or host names); a URL is checked when it is registered and again, resolved
anew, before every attempt, and redirects are never followed. The attempt connects to an
address that check approved (:func:`checked_target`, :func:`pinned_url`), with the URL's host
name in the ``Host`` header and TLS's SNI, so the name is resolved once per attempt: a DNS
answer that changes between the check and the connection (DNS rebinding) cannot move the
request elsewhere. Pure Python: no SQL here.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "SIGNATURE_HEADER",
    "CheckedTarget",
    "WebhookURLError",
    "backoff_s",
    "check_url",
    "checked_target",
    "event_id",
    "event_payload",
    "new_secret",
    "next_pass_in_s",
    "pinned_url",
    "sign",
    "signature_header",
    "verify",
]

SIGNATURE_HEADER = "Bilevel-Signature"

Resolver = Callable[[str], list[str]]


class WebhookURLError(ValueError):
    """A webhook URL that may not be used, with the reason and the offending value."""


def new_secret() -> str:
    """A fresh signing secret (``whsec_`` and 43 URL-safe characters, 256 bits)."""
    return "whsec_" + secrets.token_urlsafe(32)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """``hex(HMAC-SHA256(secret, "<timestamp>.<body>"))``."""
    msg = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Bilevel-Signature`` value: ``t=<timestamp>,v1=<signature>``."""
    return f"t={timestamp},v1={sign(secret, timestamp, body)}"


def verify(
    secret: str, header: str, body: bytes, *, tolerance_s: float = 300, now: float | None = None
) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` at a time within ``tolerance_s``."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        ts = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance_s:
        return False
    return hmac.compare_digest(parts.get("v1", ""), sign(secret, ts, body))


def event_id(subject_id: uuid.UUID, event_type: str) -> uuid.UUID:
    """The event's id: the same for every webhook and every retry of one subject's event."""
    return uuid.uuid5(subject_id, event_type)


def backoff_s(attempts: int, base_s: float, cap_s: float = 3600.0) -> float:
    """The delay after the ``attempts``-th failed attempt: ``base · 2^(attempts-1)``, capped."""
    return float(min(base_s * 2 ** max(attempts - 1, 0), cap_s))


def next_pass_in_s(poll_s: float, due_in_s: float | None) -> float:
    """How long the sender sleeps before its next pass: ``poll_s``, or less for a retry due.

    Waking only every ``poll_s`` would send a retry at the first poll after it is due: with
    a backoff below the poll period, up to twice (or more) the documented backoff late.

    Args:
        poll_s: the polling period (``webhook_poll_s``), for new events.
        due_in_s: seconds until the earliest pending delivery is due (``None``: none is).
    """
    if due_in_s is None:
        return poll_s
    return min(poll_s, max(0.0, due_in_s))


def _resolve(host: str) -> list[str]:
    infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    return sorted({str(info[4][0]) for info in infos})


def _allowed(host: str, addresses: Sequence[str], allow: Sequence[str]) -> bool:
    names = {a.lower() for a in allow if not _is_network(a)}
    if host.lower() in names:
        return True
    nets = [ipaddress.ip_network(a, strict=False) for a in allow if _is_network(a)]
    return bool(addresses) and all(
        any(ipaddress.ip_address(addr) in net for net in nets) for addr in addresses
    )


def _is_network(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class CheckedTarget:
    """A URL that passed :func:`checked_target`, with the addresses its check approved.

    Attributes:
        url: the URL as registered.
        host: its host name (what ``Host`` and SNI carry).
        addresses: the addresses the host resolved to, every one allowed; the attempt
            connects to the first, never resolving the name again.
    """

    url: str
    host: str
    addresses: tuple[str, ...]


def checked_target(
    url: str, allow: Sequence[str], resolve: Resolver | None = None
) -> CheckedTarget:
    """``url`` with its host resolved once and checked against ``allow``, else raise.

    A host is allowed when it is named in ``allow`` or when every address it resolves to lies
    in one of its networks (so a name cannot smuggle in a private address).

    Args:
        url: the webhook's URL.
        allow: the operator's ``webhook_allow``: CIDR networks and host names.
        resolve: host name -> addresses (``socket.getaddrinfo`` when omitted).

    Raises:
        WebhookURLError: naming the URL and why it is refused.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookURLError(f"url must be an http or https URL with a host, got {url!r}")
    if parts.username or parts.password:
        raise WebhookURLError(f"url must not carry credentials, got {url!r}")
    if not allow:
        raise WebhookURLError(
            f"url {url!r} is refused: this service allows no webhook address (webhook_allow "
            "is empty; the operator sets BILEVEL_WEBHOOK_ALLOW)"
        )
    host = parts.hostname
    try:
        addresses = [str(ipaddress.ip_address(host))] if _is_network(host) else (
            (resolve or _resolve)(host))  # fmt: skip
    except OSError as exc:
        raise WebhookURLError(f"url {url!r}: cannot resolve {host!r}: {exc}") from None
    if not _allowed(host, addresses, allow):
        raise WebhookURLError(
            f"url {url!r} is refused: {host} ({', '.join(addresses) or 'no address'}) is "
            f"outside the allowed addresses {list(allow)} (webhook_allow)"
        )
    if not addresses:
        raise WebhookURLError(f"url {url!r}: {host!r} resolves to no address")
    return CheckedTarget(url, host, tuple(addresses))


def check_url(url: str, allow: Sequence[str], resolve: Resolver | None = None) -> str:
    """``url`` if it is an http(s) URL whose host the operator allows, else raise.

    Raises:
        WebhookURLError: naming the URL and why it is refused (see :func:`checked_target`).
    """
    return checked_target(url, allow, resolve).url


def pinned_url(target: CheckedTarget) -> tuple[str, dict[str, str]]:
    """The URL to connect to the checked address, and the headers that name the real host.

    Returns:
        ``(url, headers)``: the URL with its host replaced by ``target.addresses[0]``, and
        ``{"Host": <the original host[:port]>}``. An ``https`` request also needs the host
        name as its TLS server name (httpx's ``sni_hostname`` extension), so that the
        certificate is checked against the name, not the address.
    """
    parts = urlsplit(target.url)
    address = target.addresses[0]
    netloc = f"[{address}]" if ":" in address else address
    if parts.port is not None:
        netloc += f":{parts.port}"
    url = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    return url, {"Host": parts.netloc}


def event_payload(event_type: str, subject_id: uuid.UUID, data: dict[str, Any]) -> dict[str, Any]:
    """The JSON body of an event: its id, type, when it was made, and the subject's data."""
    return {
        "id": str(event_id(subject_id, event_type)),
        "type": event_type,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "data": data,
    }
