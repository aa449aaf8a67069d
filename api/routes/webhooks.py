"""``/v1/webhooks``: an admin registers URLs for terminal events and reads their deliveries.

The API only records: the workers send (``worker.notify``), so no request waits on a
receiver. A URL outside the operator's ``webhook_allow`` is refused here with a 422.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from api.auditor import AuditDep, Auditor
from api.deps import AdminDep, SessionDep, SettingsDep
from api.errors import ProblemError
from api.openapi import auth_responses, links_to, problem_doc
from api.params import Digits
from api.schemas.webhooks import (
    DeliveriesPublic,
    DeliveryPublic,
    WebhookCreate,
    WebhookCreated,
    WebhookPublic,
    WebhooksPublic,
)
from jobs.store import repo
from jobs.store.models import Webhook
from jobs.webhooks import WebhookURLError, check_url

router = APIRouter(
    prefix="/v1/webhooks",
    tags=["webhooks"],
    responses={
        **auth_responses(store=False),
        403: problem_doc("the key is not admin-scoped"),
        404: problem_doc("no such webhook for this team"),
        422: problem_doc("invalid field(s), each named in `errors`"),
    },
)


def _hook_or_404(audit: Auditor, webhook_id: uuid.UUID) -> Webhook:
    hook = repo.get_webhook(audit.session, audit.principal.team.id, webhook_id)
    if hook is None:
        raise audit.not_found("webhook", Webhook.id, webhook_id)
    return hook


@router.post(
    "",
    status_code=201,
    response_model=WebhookCreated,
    responses={201: {"links": links_to("/v1/webhooks/{webhook_id}", "webhook_id", "id",
                                       {"DeleteWebhook": ("", "delete"),
                                        "ListDeliveries": ("/deliveries", "get")})}},
)  # fmt: skip
async def create_webhook(
    body: WebhookCreate, request: Request, session: SessionDep, admin: AdminDep,
    settings: SettingsDep, response: Response, audit: AuditDep,
) -> WebhookCreated:  # fmt: skip
    """Register a URL; the answer holds its signing secret, shown this once."""
    try:
        # resolving the host blocks: in the pool, like the store's queries
        await run_in_threadpool(check_url, body.url, settings.webhook_allow)
    except WebhookURLError as exc:
        raise ProblemError(
            422, str(exc), slug="validation-error", title="Invalid request",
            errors=[{"field": "url", "loc": ["url"], "message": str(exc),
                     "type": "url_not_allowed"}],
        ) from None  # fmt: skip

    def create() -> WebhookCreated:
        # stored sealed under the server secret (jobs.sealing); the plaintext is shown once
        hook, secret = repo.create_webhook(session, admin.team.id, body.url, body.description,
                                           actor=audit.actor,
                                           key_secret=request.app.state.key_secret)  # fmt: skip
        session.commit()
        return WebhookCreated(**WebhookPublic.of(hook).model_dump(), secret=secret)

    created = await run_in_threadpool(create)
    response.headers["Location"] = f"/v1/webhooks/{created.id}"
    return created


@router.get("", response_model=WebhooksPublic)
def list_webhooks(session: SessionDep, admin: AdminDep) -> WebhooksPublic:
    """The team's active webhooks (without their secrets)."""
    hooks = [WebhookPublic.of(h) for h in repo.list_webhooks(session, admin.team.id)]
    return WebhooksPublic(data=hooks, count=len(hooks))


@router.delete("/{webhook_id}", response_model=WebhookPublic)
def delete_webhook(
    webhook_id: uuid.UUID, session: SessionDep, admin: AdminDep, audit: AuditDep
) -> WebhookPublic:
    """Stop sending to a webhook; it and its deliveries stay readable."""
    hook = _hook_or_404(audit, webhook_id)
    repo.revoke_webhook(session, hook, actor=audit.actor)  # again: changes nothing
    session.commit()
    return WebhookPublic.of(_hook_or_404(audit, webhook_id))


@router.get("/{webhook_id}/deliveries", response_model=DeliveriesPublic)
def list_deliveries(
    webhook_id: uuid.UUID,
    session: SessionDep,
    admin: AdminDep,
    audit: AuditDep,
    limit: Annotated[int, Query(ge=1, le=500, description="page size"), Digits] = 100,
) -> DeliveriesPublic:
    """A webhook's deliveries, newest first: status, attempts, last answer or error."""
    hook = _hook_or_404(audit, webhook_id)
    rows = [DeliveryPublic.of(d) for d in repo.list_deliveries(session, hook.id, limit)]
    return DeliveriesPublic(data=rows, count=len(rows))
