"""``/v1/pool`` (who uses the shared pool) and ``/v1/teams/{name}`` (weights and limits).

An operator key sees every team's row (names and counts, nothing of another team's jobs);
any other key sees its own team's row, the pool's totals per kind and its own queued jobs
with their place in the queue. Only the operator's key sets a team's weight and running
limits, its own team's included: a team admin asking is refused with 403, audited (the
target team sees the attempt), so no team can raise its own share of the pool.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from starlette.concurrency import run_in_threadpool

from api.deps import PrincipalDep, SessionDep, SettingsDep, actor_of, forbidden
from api.errors import ProblemError
from api.openapi import auth_responses, problem_doc
from api.refresh import Reading
from api.schemas.pool import (
    KindPublic,
    PoolPublic,
    PoolTotal,
    QueuedPublic,
    TeamPatch,
    TeamPublic,
    TeamShare,
    WorkerPublic,
)
from api.settings import ApiSettings
from jobs.fairshare import Priority
from jobs.specs.job import TEXT
from jobs.status import AuditTarget, QueueKind
from jobs.store import repo

__all__ = ["router"]

router = APIRouter(
    tags=["pool"],
    responses=auth_responses(),
)


@router.get("/v1/pool", response_model=PoolPublic)
def get_pool(
    session: SessionDep, principal: PrincipalDep, settings: SettingsDep, request: Request
) -> Response:
    """Who uses the pool: totals, your team's jobs (every team's: the operator), workers."""
    memo = request.app.state.__dict__.setdefault("pool_memo", {"reading": Reading("the pool view")})
    policy = repo.Policy.of(settings)
    age = repo.pool_state_age(memo)
    if age is not None and age >= settings.pool_cache_s:
        sessions = request.app.state.sessions

        def read() -> None:
            with sessions() as s:
                repo.refresh_pool_state(s, policy, memo)

        memo["reading"].renew(read)
    # a viewer's answer is the same until the next reading: made once, then sent as it is
    # (no query, no models: the largest body of the API, asked by every team's pollers)
    viewer = (principal.team.id, principal.operator)
    answers = repo.pool_answers(memo)
    body = answers.get(viewer) if answers is not None else None
    if body is None:
        view = repo.pool_view(session, policy, principal.team.id, memo=memo,
                              max_age_s=float("inf"))  # fmt: skip
        public = _pool_public(view, principal, settings)
        body = view.answers[viewer] = public.model_dump_json().encode()
    return Response(body, media_type="application/json")


def _pool_public(
    view: repo.PoolView, principal: repo.Principal, settings: ApiSettings
) -> PoolPublic:
    """``view`` as ``principal`` may see it: its team's row, or every team's (the operator)."""
    totals: dict[str, PoolTotal] = {}
    for t in view.teams:
        for k, v in t.kinds.items():
            total = totals.setdefault(k, PoolTotal(running=0, queued=0, teams=0))
            total.running, total.queued, total.teams = (
                total.running + v.running,
                total.queued + v.queued,
                total.teams + 1,
            )
    shown = [t for t in view.teams if principal.operator or t.name == principal.team.name]
    return PoolPublic(
        totals=totals,
        teams=[
            TeamShare(name=t.name, weight=t.weight,
                      kinds={k: KindPublic(**vars(v)) for k, v in t.kinds.items()})
            for t in shown
        ],
        workers=[WorkerPublic(**vars(w)) for w in view.workers],
        oldest_wait_s=view.oldest_wait_s,
        queued=[
            QueuedPublic(**{**vars(q), "priority": Priority(q.priority).name.lower()})
            for q in view.queued
        ],
        preemption=settings.preemption,
    )  # fmt: skip


Name = Annotated[
    str, Path(min_length=1, max_length=100, pattern=TEXT, description="the team's name")
]


@router.patch(
    "/v1/teams/{name}",
    response_model=TeamPublic,
    responses={
        403: problem_doc("the key is not the pool operator's"),
        404: problem_doc("no such team"),
        422: problem_doc("invalid field(s), each named in `errors`"),
    },
)
async def patch_team(
    name: Name,
    body: TeamPatch,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    settings: SettingsDep,
) -> TeamPublic:
    """Set a team's weight and running limits (the operator's key); audited for the team."""
    changes: dict[str, Any] = body.model_dump(exclude_unset=True)
    current = await run_in_threadpool(repo.team_by_name, session, name)
    if not principal.operator:
        # refused whether or not the team exists, so the answer tells nothing of other teams
        raise await forbidden(
            request, session, principal,
            f"key {principal.prefix} has scope {principal.scope!r}; setting a team's weight "
            "and running limits needs the pool operator's key (bilevel keys create --operator)",
            target=AuditTarget.TEAM, target_id=name,
            target_team_id=current.id if current is not None else None,
        )  # fmt: skip
    if current is None:
        raise ProblemError(404, f"no team {name!r}", slug="not-found")
    actor = actor_of(request, principal)

    def apply() -> TeamPublic:
        team = repo.set_team_policy(session, name, actor=actor, **changes)
        if team is None:
            raise ProblemError(404, f"no team {name!r}", slug="not-found")
        session.commit()
        return team_public(team, repo.Policy.of(settings))

    return await run_in_threadpool(apply)


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
