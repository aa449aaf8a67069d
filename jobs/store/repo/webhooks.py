"""Webhooks and their deliveries: registering, listing, the outbox of terminal events.

:func:`enqueue_events` turns every terminal job and every study whose members have all
ended into one pending delivery per active webhook of its team (the unique
``(webhook_id, event_id)`` makes a second pass, or two workers at once, add nothing);
:func:`claim_due` and :func:`record_attempt` are the sender's side.

A webhook's signing secret is stored sealed under the server secret (``jobs.sealing``);
:func:`claim_due` opens it for the attempt, and :func:`reseal_webhook_secrets` (each sender
pass) seals the plaintext of rows from before, and moves rows sealed under the previous
server secret to the current one during a rotation, as API keys are rehashed on use.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from jobs import keys
from jobs.sealing import SealError, seal, unseal
from jobs.status import TERMINAL, AuditAction, AuditTarget, DeliveryStatus
from jobs.store.models import Job, Study, Webhook, WebhookDelivery, utcnow
from jobs.store.repo.audit import Actor, record_event
from jobs.store.repo.rows import rows_changed
from jobs.store.repo.studies import study_status_counts
from jobs.studies.table import study_status
from jobs.webhooks import backoff_s, event_id, event_payload, new_secret

__all__ = [
    "DueDelivery",
    "claim_due",
    "create_webhook",
    "enqueue_events",
    "get_webhook",
    "list_deliveries",
    "list_webhooks",
    "next_due_at",
    "record_attempt",
    "reseal_webhook_secrets",
    "revoke_webhook",
]


def create_webhook(
    session: Session,
    team_id: uuid.UUID,
    url: str,
    description: str,
    *,
    actor: Actor,
    key_secret: bytes,
) -> tuple[Webhook, str]:
    """A new webhook and its fresh signing secret, audited by ``actor``.

    The secret is stored sealed under ``key_secret`` (the server secret); the plaintext is
    returned for the caller to show once.
    """
    plaintext = new_secret()
    hook = Webhook(id=uuid.uuid4(), team_id=team_id, url=url, description=description,
                   secret=None, secret_sealed=seal(plaintext, key_secret),
                   sealed_secret_id=keys.secret_id(key_secret), created_at=utcnow())  # fmt: skip
    session.add(hook)
    session.flush()
    record_event(session, actor, AuditAction.WEBHOOK_CREATE, AuditTarget.WEBHOOK, str(hook.id),
                 target_team_id=team_id,
                 after={"url": url, "description": description})  # fmt: skip
    return hook, plaintext


def reseal_webhook_secrets(
    session: Session, *, secret: bytes, previous: bytes | None = None
) -> int:
    """Seal every webhook secret under ``secret``: plaintext rows, and rows of ``previous``.

    A row sealed under a secret that is neither is left as it is (its deliveries fail with
    the reason until the operator names that secret as the previous one). Returns how many
    rows were resealed; the caller commits.
    """
    current = keys.secret_id(secret)
    rows = session.scalars(
        select(Webhook).where(
            (Webhook.secret.is_not(None)) | (Webhook.sealed_secret_id != current)
        ).with_for_update(skip_locked=True)
    ).all()  # fmt: skip
    done = 0
    for hook in rows:
        plaintext = _open(hook.secret, hook.secret_sealed, hook.sealed_secret_id,
                          secret, previous)  # fmt: skip
        if plaintext is None:
            continue
        hook.secret, hook.secret_sealed = None, seal(plaintext, secret)
        hook.sealed_secret_id = current
        done += 1
    session.flush()
    return done


def _open(
    plaintext: str | None,
    sealed: str | None,
    sealed_id: str | None,
    secret: bytes | None,
    previous: bytes | None,
) -> str | None:
    """A webhook's signing secret, or ``None`` when no secret at hand opens it."""
    if plaintext is not None:
        return plaintext
    if sealed is None:
        return None
    for candidate in (secret, previous):
        if candidate is not None and keys.secret_id(candidate) == sealed_id:
            try:
                return unseal(sealed, candidate)
            except SealError:
                return None
    return None


def list_webhooks(session: Session, team_id: uuid.UUID) -> list[Webhook]:
    """The team's active webhooks, oldest first."""
    q = select(Webhook).where(Webhook.team_id == team_id, Webhook.revoked_at.is_(None))
    return list(session.scalars(q.order_by(Webhook.created_at, Webhook.id)))


def get_webhook(session: Session, team_id: uuid.UUID, webhook_id: uuid.UUID) -> Webhook | None:
    """The team's webhook (revoked ones too), or ``None``."""
    hook = session.get(Webhook, webhook_id, populate_existing=True)
    return hook if hook is not None and hook.team_id == team_id else None


def revoke_webhook(session: Session, hook: Webhook, *, actor: Actor) -> bool:
    """Stop sending to ``hook``; its pending deliveries are left unsent.

    Audited as ``webhook.delete`` by ``actor``; revoking it again changes nothing and
    records nothing.

    Returns:
        Whether this call revoked it.
    """
    done = rows_changed(session, update(Webhook)
                        .where(Webhook.id == hook.id, Webhook.revoked_at.is_(None))
                        .values(revoked_at=utcnow()))  # fmt: skip
    if done != 1:
        return False
    record_event(session, actor, AuditAction.WEBHOOK_DELETE, AuditTarget.WEBHOOK, str(hook.id),
                 target_team_id=hook.team_id, before={"url": hook.url})  # fmt: skip
    return True


def list_deliveries(
    session: Session, webhook_id: uuid.UUID, limit: int = 100
) -> list[WebhookDelivery]:
    """The webhook's deliveries, newest first."""
    q = (
        select(WebhookDelivery)
        .where(WebhookDelivery.webhook_id == webhook_id)
        .order_by(WebhookDelivery.id.desc())
        .limit(limit)
    )
    return list(session.scalars(q))


def _job_data(job: Job) -> dict[str, Any]:
    s = job.summary or {}
    keep = ("final_outer_loss", "best_outer_loss", "metrics", "s_per_iteration", "peak_bytes")
    return {"job": {
        "id": str(job.id), "name": job.name, "status": str(job.status),
        "iteration": job.iteration, "iterations": job.iterations,
        "summary": {k: s[k] for k in keep if k in s}, "error": job.error,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }}  # fmt: skip


def enqueue_events(session: Session, *, window_s: float = 86_400.0) -> int:
    """Add a pending delivery per active webhook for each terminal event not yet queued.

    Jobs that ended (and studies created) in the last ``window_s`` and after the webhook was
    registered are considered. Returns how many deliveries were added.
    """
    hooks = list(session.scalars(select(Webhook).where(Webhook.revoked_at.is_(None))))
    if not hooks:
        return 0
    since = utcnow() - timedelta(seconds=window_s)
    rows: list[dict[str, Any]] = []
    by_team: dict[uuid.UUID, list[Webhook]] = {}
    for h in hooks:
        by_team.setdefault(h.team_id, []).append(h)
    for team_id, team_hooks in by_team.items():
        first = max(since, min(h.created_at for h in team_hooks))
        events: list[tuple[uuid.UUID, str, datetime, dict[str, Any]]] = []
        jobs = session.scalars(select(Job).where(
            Job.team_id == team_id, Job.status.in_(tuple(TERMINAL)), Job.finished_at >= first
        ))  # fmt: skip
        for job in jobs:
            if job.finished_at is None:  # never for a terminal job; narrows the type
                continue
            events.append((job.id, f"job.{job.status}", job.finished_at, _job_data(job)))
        studies = list(session.scalars(
            select(Study).where(Study.team_id == team_id, Study.created_at >= first)
        ))  # fmt: skip
        counts = study_status_counts(session, [s.id for s in studies])
        for study in studies:
            c = counts[study.id]
            # a search between two members is not over: only once its budget is spent
            if sum(c[s] for s in TERMINAL) < sum(c.values()) or not study.search_done:
                continue
            status = study_status(c)
            data = {"study": {"id": str(study.id), "name": study.name, "status": str(status),
                              "members": sum(c.values()),
                              "by_status": {str(k): v for k, v in c.items()}}}  # fmt: skip
            events.append((study.id, f"study.{status}", study.created_at, data))
        for subject, etype, at, data in events:
            for h in team_hooks:
                if at < h.created_at:
                    continue
                rows.append({"webhook_id": h.id, "event_id": event_id(subject, etype),
                             "event_type": etype, "subject_id": subject,
                             "payload": event_payload(etype, subject, data)})  # fmt: skip
    if not rows:
        return 0
    known = set(session.execute(
        select(WebhookDelivery.webhook_id, WebhookDelivery.event_id).where(
            WebhookDelivery.event_id.in_({r["event_id"] for r in rows}))
    ))  # fmt: skip
    new = [r for r in rows if (r["webhook_id"], r["event_id"]) not in known]
    if not new:
        return 0
    now = utcnow()
    for r in new:
        r.update(status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=now, created_at=now)
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = (
        insert(WebhookDelivery)
        .values(new)
        .on_conflict_do_nothing(index_elements=["webhook_id", "event_id"])
    )
    session.execute(stmt)
    return len(new)


@dataclass(frozen=True)
class DueDelivery:
    """A delivery claimed for one attempt: where to send what, signed with which secret.

    ``secret`` is ``None`` when neither the current nor the previous server secret opens
    the webhook's sealed secret: the attempt fails with that reason.
    """

    id: int
    url: str
    secret: str | None
    event_type: str
    event_id: uuid.UUID
    payload: dict[str, Any]
    attempts: int


def next_due_at(session: Session) -> datetime | None:
    """When the earliest pending delivery (of a live webhook) is due; ``None`` if none is."""
    return session.scalar(
        select(func.min(WebhookDelivery.next_attempt_at))
        .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
        .where(WebhookDelivery.status == DeliveryStatus.PENDING, Webhook.revoked_at.is_(None))
    )


def claim_due(
    session: Session,
    *,
    lease_s: float,
    limit: int = 20,
    secret: bytes | None = None,
    previous: bytes | None = None,
) -> list[DueDelivery]:
    """Pending deliveries that are due, each pushed ``lease_s`` ahead so no one else sends it.

    On PostgreSQL rows another sender holds are skipped (``FOR UPDATE SKIP LOCKED``). Each
    webhook's signing secret is opened with the server secret that sealed it, ``secret`` or
    ``previous`` (a rotation).
    """
    now = utcnow()
    q = (
        select(WebhookDelivery, Webhook)
        .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
        .where(
            WebhookDelivery.status == DeliveryStatus.PENDING,
            WebhookDelivery.next_attempt_at <= now,
            Webhook.revoked_at.is_(None),
        )
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=WebhookDelivery)
    )
    out = []
    for d, h in session.execute(q):
        d.next_attempt_at = now + timedelta(seconds=lease_s)
        signing = _open(h.secret, h.secret_sealed, h.sealed_secret_id, secret, previous)
        out.append(DueDelivery(d.id, h.url, signing, d.event_type, d.event_id, d.payload,
                               d.attempts))  # fmt: skip
    session.flush()
    return out


def record_attempt(
    session: Session,
    delivery_id: int,
    *,
    ok: bool,
    response_status: int | None,
    error: str | None,
    max_attempts: int,
    backoff_base_s: float,
) -> str:
    """Record one attempt: delivered, retried after a backoff, or failed after the last one.

    Returns:
        The delivery's new status.
    """
    d = session.get(WebhookDelivery, delivery_id)
    if d is None:
        return DeliveryStatus.FAILED
    now = utcnow()
    d.attempts += 1
    d.response_status = response_status
    d.last_error = None if ok else (error or f"HTTP {response_status}")[:500]
    if ok:
        d.status, d.delivered_at = DeliveryStatus.DELIVERED, now
    elif d.attempts >= max_attempts:
        d.status = DeliveryStatus.FAILED
    else:
        d.next_attempt_at = now + timedelta(seconds=backoff_s(d.attempts, backoff_base_s))
    session.flush()
    return d.status
