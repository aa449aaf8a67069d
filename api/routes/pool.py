"""``/v1/pool`` (who uses the shared pool) and ``/v1/teams/{name}`` (weights and limits).

Any key sees the pool's totals per team (names and counts, nothing of another team's jobs)
and its own team's queued jobs with their place in the queue; an admin key sets a team's
weight and running limits.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from api.auditor import AuditDep
from api.deps import AdminDep, SessionDep, SettingsDep, TeamDep
from api.errors import ProblemError
from api.schemas import auth_responses, problem_doc
from jobs import repo
from jobs.fairshare import Priority
from jobs.specs.job import TEXT

__all__ = ["PoolPublic", "TeamPatch", "TeamPublic", "router"]

router = APIRouter(
    tags=["pool"],
    responses=auth_responses(),
)


class KindPublic(BaseModel):
    """A team's jobs on one kind of worker (``cpu`` or ``gpu``)."""

    running: int
    queued: int
    limit: int = Field(description="the most jobs of the team running at once on this kind")
    fair_share: float = Field(description="the fraction of the workers its weight entitles it to")
    share: float = Field(description="the fraction of this kind's running jobs that are its own")


class TeamShare(BaseModel):
    """One team with queued or running jobs."""

    name: str
    weight: float
    kinds: dict[str, KindPublic]


class WorkerPublic(BaseModel):
    """A live worker (seen within one lease); ``job`` only when it runs one of your jobs."""

    name: str
    queue: str
    last_seen: datetime
    busy: bool
    job: uuid.UUID | None


class QueuedPublic(BaseModel):
    """One of your team's queued jobs, in the order the pool's fair share would run them."""

    id: uuid.UUID
    name: str
    queue: str
    priority: str
    position: int = Field(description="1: the next job a free worker of its kind takes")
    estimated_start_s: float | None = Field(
        description="seconds until it likely starts (running jobs' ETAs, then the median run "
        "time of the kind's recent jobs); null without a live worker of its kind"
    )


class PoolPublic(BaseModel):
    """The shared pool now."""

    teams: list[TeamShare]
    workers: list[WorkerPublic]
    oldest_wait_s: dict[str, float | None] = Field(
        description="per kind, how long its oldest queued job has waited (null: none queued)"
    )
    queued: list[QueuedPublic]
    preemption: bool = Field(description="whether the scheduler preempts over-share jobs")


class TeamPatch(BaseModel):
    """A team's fair-share settings; a field left out stays, ``null`` resets to the default."""

    model_config = ConfigDict(extra="forbid")

    weight: Annotated[float, Field(gt=0, le=1e6)] | None = None
    max_running_cpu: Annotated[int, Field(ge=1, le=100_000)] | None = None
    max_running_gpu: Annotated[int, Field(ge=1, le=100_000)] | None = None


class TeamPublic(BaseModel):
    """A team's fair-share settings as they apply (the defaults filled in)."""

    name: str
    weight: float
    max_running_cpu: int
    max_running_gpu: int
    custom: list[str] = Field(description="the settings set for this team, not defaults")


@router.get("/v1/pool", response_model=PoolPublic)
def get_pool(session: SessionDep, team: TeamDep, settings: SettingsDep) -> PoolPublic:
    """Who uses the pool: each team's jobs, the live workers, your queued jobs' places."""
    view = repo.pool_view(session, repo.Policy.of(settings), team.id)
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
    before = {f: getattr(current, f) for f in changes}
    team = repo.set_team_policy(session, name, **changes)
    if team is None:
        raise ProblemError(404, f"no team {name!r}", slug="not-found")
    if changes:
        # the pool is shared: an admin may set another team's weight, which sees it too
        audit.record("team.update", "team", name, target_team_id=team.id, before=before,
                     after={f: getattr(team, f) for f in changes})  # fmt: skip
    session.commit()
    return team_public(team, repo.Policy.of(settings))


def team_public(team: Any, policy: repo.Policy) -> TeamPublic:
    """A team row's settings with the policy's defaults filled in."""
    return TeamPublic(
        name=team.name,
        weight=policy.weight(team),
        max_running_cpu=policy.limit(team, "cpu"),
        max_running_gpu=policy.limit(team, "gpu"),
        custom=[f for f in ("weight", "max_running_cpu", "max_running_gpu")
                if getattr(team, f) is not None],
    )  # fmt: skip
