"""Bodies of ``/v1/pool`` (who uses the shared pool) and ``/v1/teams/{name}`` (its settings)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from jobs.status import QueueKind

__all__ = [
    "KindPublic",
    "PoolPublic",
    "PoolTotal",
    "QueuedPublic",
    "TeamPatch",
    "TeamPublic",
    "TeamShare",
    "WorkerPublic",
]


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
    queue: QueueKind
    last_seen: datetime
    busy: bool
    job: uuid.UUID | None


class QueuedPublic(BaseModel):
    """One of your team's queued jobs, in the order the pool's fair share would run them."""

    id: uuid.UUID
    name: str
    queue: QueueKind
    priority: str
    position: int = Field(description="1: the next job a free worker of its kind takes")
    estimated_start_s: float | None = Field(
        description="seconds until it likely starts (running jobs' ETAs, then the median run "
        "time of the kind's recent jobs); null without a live worker of its kind"
    )


class PoolTotal(BaseModel):
    """The whole pool's jobs on one kind of worker, every team's together."""

    running: int
    queued: int
    teams: int = Field(description="how many teams have queued or running jobs of this kind")


class PoolPublic(BaseModel):
    """The shared pool now: every team's row for the operator's key, else the caller's own."""

    totals: dict[str, PoolTotal] = Field(description="per kind, every team's jobs together")
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
