"""``/v1/pool`` (who uses the shared pool) and ``/v1/teams/{name}`` (weights and limits).

Any key sees the pool's totals per team (names and counts, nothing of another team's jobs)
and its own team's queued jobs with their place in the queue; an admin key sets a team's
weight and running limits.
"""

from __future__ import annotations

import logging
import threading
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request

from api.auditor import AuditDep
from api.deps import AdminDep, SessionDep, SettingsDep, TeamDep
from api.errors import ProblemError
from api.openapi import auth_responses, problem_doc
from api.schemas.pool import (
    KindPublic,
    PoolPublic,
    QueuedPublic,
    TeamPatch,
    TeamPublic,
    TeamShare,
    WorkerPublic,
)
from jobs.fairshare import Priority
from jobs.specs.job import TEXT
from jobs.status import QueueKind
from jobs.store import repo

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter(
    tags=["pool"],
    responses=auth_responses(),
)


@router.get("/v1/pool", response_model=PoolPublic)
def get_pool(
    session: SessionDep, team: TeamDep, settings: SettingsDep, request: Request
) -> PoolPublic:
    """Who uses the pool: each team's jobs, the live workers, your queued jobs' places."""
    memo = request.app.state.__dict__.setdefault("pool_memo", {"lock": threading.Lock()})
    policy = repo.Policy.of(settings)
    age = repo.pool_state_age(memo)
    if age is not None and age >= settings.pool_cache_s and memo["lock"].acquire(blocking=False):
        # stale: one thread reads the queue again while requests get the last reading, so
        # no request waits for a read of the whole queue (only the first one ever)
        threading.Thread(target=_refresh, args=(request.app.state.sessions, policy, memo),
                         daemon=True).start()  # fmt: skip
    view = repo.pool_view(session, policy, team.id, memo=memo, max_age_s=float("inf"))
    return PoolPublic(
        teams=[
            TeamShare(name=t.name, weight=t.weight,
                      kinds={k: KindPublic(**vars(v)) for k, v in t.kinds.items()})
            for t in view.teams
        ],
        workers=[WorkerPublic(**vars(w)) for w in view.workers],
        oldest_wait_s=view.oldest_wait_s,
        queued=[
            QueuedPublic(**{**vars(q), "priority": Priority(q.priority).name.lower()})
            for q in view.queued
        ],
        preemption=settings.preemption,
    )  # fmt: skip


def _refresh(sessions: Any, policy: repo.Policy, memo: dict[str, Any]) -> None:
    try:
        with sessions() as s:
            repo.refresh_pool_state(s, policy, memo)
    except Exception:  # the next stale request tries again; the view stays the last one
        log.warning("could not refresh the pool view", exc_info=True)
    finally:
        memo["lock"].release()


Name = Annotated[
    str, Path(min_length=1, max_length=100, pattern=TEXT, description="the team's name")
]


@router.patch(
    "/v1/teams/{name}",
    response_model=TeamPublic,
    responses={
        403: problem_doc("the key is not admin-scoped"),
        404: problem_doc("no such team"),
        422: problem_doc("invalid field(s), each named in `errors`"),
    },
)
def patch_team(
    name: Name,
    body: TeamPatch,
    session: SessionDep,
    admin: AdminDep,
    settings: SettingsDep,
    audit: AuditDep,
) -> TeamPublic:
    """Set a team's weight and running limits (admin keys); audited for both teams."""
    changes: dict[str, Any] = body.model_dump(exclude_unset=True)
    current = repo.team_by_name(session, name)
    if current is None:
        raise ProblemError(404, f"no team {name!r}", slug="not-found")
    # the pool is shared: an admin may set another team's weight, which sees the event too
    team = repo.set_team_policy(session, name, actor=audit.actor, **changes)
    if team is None:
        raise ProblemError(404, f"no team {name!r}", slug="not-found")
    session.commit()
    return team_public(team, repo.Policy.of(settings))


def team_public(team: Any, policy: repo.Policy) -> TeamPublic:
    """A team row's settings with the policy's defaults filled in."""
    return TeamPublic(
        name=team.name,
        weight=policy.weight(team),
        max_running_cpu=policy.limit(team, QueueKind.CPU),
        max_running_gpu=policy.limit(team, QueueKind.GPU),
        custom=[f for f in ("weight", "max_running_cpu", "max_running_gpu")
                if getattr(team, f) is not None],
    )  # fmt: skip
