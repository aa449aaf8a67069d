"""The webhook sender: a thread in every worker (and in the embedded executor).

Each pass turns new terminal events into pending deliveries (``repo.enqueue_events``), then
sends the due ones: a signed POST (``jobs.webhooks``) with a short timeout, no redirects,
to a URL checked against ``webhook_allow`` again right before the attempt. A 2xx answer is
delivered; anything else is retried after ``webhook_backoff_s · 2^(attempt-1)`` until
``webhook_max_attempts``, then recorded failed with the last status or error. The API never
sends anything: registering a webhook and reading deliveries are its only parts.
"""

from __future__ import annotations

import json
import logging
import threading
import time

import httpx
from sqlalchemy.orm import Session, sessionmaker

from jobs.settings import StoreSettings
from jobs.store import repo
from jobs.webhooks import SIGNATURE_HEADER, Resolver, WebhookURLError, check_url
from jobs.webhooks import signature_header as make_signature

__all__ = ["Notifier", "notify_pass", "send"]

log = logging.getLogger(__name__)


def send(
    d: repo.DueDelivery, settings: StoreSettings, resolve: Resolver | None = None
) -> tuple[bool, int | None, str | None]:
    """One attempt: ``(delivered, HTTP status or None, error or None)``."""
    try:
        check_url(d.url, settings.webhook_allow, resolve)
    except WebhookURLError as exc:
        return False, None, str(exc)
    body = json.dumps(d.payload, separators=(",", ":"), sort_keys=True).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "bilevel-webhooks/1",
        "Bilevel-Event": d.event_type,
        "Bilevel-Delivery": str(d.event_id),
        SIGNATURE_HEADER: make_signature(d.secret, int(time.time()), body),
    }
    try:
        r = httpx.post(d.url, content=body, headers=headers, timeout=settings.webhook_timeout_s,
                       follow_redirects=False)  # fmt: skip
    except httpx.HTTPError as exc:
        return False, None, f"{type(exc).__name__}: {exc}"
    ok = 200 <= r.status_code < 300
    return ok, r.status_code, None if ok else f"HTTP {r.status_code}"


def notify_pass(
    sessions: sessionmaker[Session], settings: StoreSettings, resolve: Resolver | None = None
) -> int:
    """Queue new events, then attempt every due delivery once; returns how many were tried."""
    with sessions.begin() as s:
        repo.enqueue_events(s)
    # long enough for one attempt, so no other sender tries the same delivery meanwhile
    lease_s = 2 * settings.webhook_timeout_s + 5
    with sessions.begin() as s:
        due = repo.claim_due(s, lease_s=lease_s)
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

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.webhook_poll_s):
            try:
                notify_pass(self.sessions, self.settings)
            except Exception:  # the next pass tries again; nothing is lost from the outbox
                log.warning("webhook pass failed", exc_info=True)
