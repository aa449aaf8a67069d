"""The webhook sender: a thread in every worker (and in the embedded executor).

Each pass seals any webhook secret not yet sealed under the current server secret
(``repo.reseal_webhook_secrets``: rows from before 0013, or from before a rotation), turns
new terminal events into pending deliveries (``repo.enqueue_events``), then sends the due
ones: a signed POST (``jobs.webhooks``) with a short timeout, no redirects, to a URL checked
against ``webhook_allow`` again right before the attempt, and sent to the very address that
check approved (the host name goes in ``Host`` and SNI; no second resolution). The sender
needs the server secret (``BILEVEL_KEY_SECRET``) to open the secrets: without it every
attempt fails with that reason, and the deliveries wait in the outbox. A 2xx answer is
delivered; anything else is retried after ``webhook_backoff_s · 2^(attempt-1)`` until
``webhook_max_attempts``, then recorded failed with the last status or error. The thread
polls every ``webhook_poll_s`` and wakes earlier for a retry due sooner, so a retry waits
its backoff, not the next poll (``jobs.webhooks.next_pass_in_s``). The API never
sends anything: registering a webhook and reading deliveries are its only parts.
"""

from __future__ import annotations

import json
import logging
import threading
import time

import httpx
from sqlalchemy.orm import Session, sessionmaker

from jobs.keys import KeySecretError, load_key_secret, load_previous_key_secret
from jobs.settings import StoreSettings
from jobs.store import repo
from jobs.store.models import utcnow
from jobs.webhooks import (
    SIGNATURE_HEADER,
    Resolver,
    WebhookURLError,
    checked_target,
    next_pass_in_s,
    pinned_url,
)
from jobs.webhooks import signature_header as make_signature

__all__ = ["Notifier", "notify_pass", "send"]

log = logging.getLogger(__name__)


_UNOPENED = (
    "the webhook's signing secret does not open under the server secret (set "
    "BILEVEL_KEY_SECRET on the workers, and BILEVEL_KEY_SECRET_PREVIOUS during a rotation)"
)


def send(
    d: repo.DueDelivery, settings: StoreSettings, resolve: Resolver | None = None
) -> tuple[bool, int | None, str | None]:
    """One attempt: ``(delivered, HTTP status or None, error or None)``.

    The host is resolved once, by the check; the request goes to an address it approved.
    """
    try:
        target = checked_target(d.url, settings.webhook_allow, resolve)
    except WebhookURLError as exc:
        return False, None, str(exc)
    if d.secret is None:
        return False, None, _UNOPENED
    url, host = pinned_url(target)
    body = json.dumps(d.payload, separators=(",", ":"), sort_keys=True).encode()
    headers = {
        **host,
        "Content-Type": "application/json",
        "User-Agent": "bilevel-webhooks/1",
        "Bilevel-Event": d.event_type,
        "Bilevel-Delivery": str(d.event_id),
        SIGNATURE_HEADER: make_signature(d.secret, int(time.time()), body),
    }
    # TLS checks the certificate against the name, while the socket goes to the address
    extensions = {"sni_hostname": target.host} if url.startswith("https:") else {}
    try:
        with httpx.Client(timeout=settings.webhook_timeout_s, follow_redirects=False) as http:
            r = http.post(url, content=body, headers=headers, extensions=extensions)
    except httpx.HTTPError as exc:
        return False, None, f"{type(exc).__name__}: {exc}"
    ok = 200 <= r.status_code < 300
    return ok, r.status_code, None if ok else f"HTTP {r.status_code}"


def notify_pass(
    sessions: sessionmaker[Session], settings: StoreSettings, resolve: Resolver | None = None
) -> int:
    """Seal, queue new events, then attempt every due delivery once; returns how many were tried."""
    secret, previous = _server_secrets(settings)
    with sessions.begin() as s:
        if secret is not None:
            repo.reseal_webhook_secrets(s, secret=secret, previous=previous)
        repo.enqueue_events(s)
    # long enough for one attempt, so no other sender tries the same delivery meanwhile
    lease_s = 2 * settings.webhook_timeout_s + 5
    with sessions.begin() as s:
        due = repo.claim_due(s, lease_s=lease_s, secret=secret, previous=previous)
    for d in due:
        ok, status, error = send(d, settings, resolve)
        with sessions.begin() as s:
            state = repo.record_attempt(
                s, d.id, ok=ok, response_status=status, error=error,
                max_attempts=settings.webhook_max_attempts,
                backoff_base_s=settings.webhook_backoff_s,
            )  # fmt: skip
        if not ok:
            log.warning("webhook delivery %s (%s) to %s: %s, now %s",
                        d.id, d.event_type, d.url, error, state)  # fmt: skip
    return len(due)


def _server_secrets(settings: StoreSettings) -> tuple[bytes | None, bytes | None]:
    """The current and previous server secrets; ``(None, None)`` (logged) when unusable."""
    try:
        return load_key_secret(settings), load_previous_key_secret(settings)
    except KeySecretError as exc:
        log.warning("webhooks: no server secret to open signing secrets with: %s", exc)
        return None, None


class Notifier:
    """Runs :func:`notify_pass` every ``webhook_poll_s`` on a daemon thread until stopped."""

    def __init__(self, sessions: sessionmaker[Session], settings: StoreSettings):
        self.sessions, self.settings = sessions, settings
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="bilevel-webhooks")

    def start(self) -> Notifier:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def next_wait_s(self) -> float:
        """Seconds until the next pass: the poll period, or until a retry is due."""
        with self.sessions() as s:
            due = repo.next_due_at(s)
        due_in = (due - utcnow()).total_seconds() if due is not None else None
        return next_pass_in_s(self.settings.webhook_poll_s, due_in)

    def _loop(self) -> None:
        wait = self.settings.webhook_poll_s
        while not self._stop.wait(wait):
            wait = self.settings.webhook_poll_s
            try:
                notify_pass(self.sessions, self.settings)
                wait = self.next_wait_s()
            except Exception:  # the next pass tries again; nothing is lost from the outbox
                log.warning("webhook pass failed", exc_info=True)
