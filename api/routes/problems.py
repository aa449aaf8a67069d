"""``/v1/problems``: the problem families a spec may name, each with its JSON Schema.

Built-in families and those an installed plugin adds (entry-point group
``bilevel.problems``, :mod:`jobs.plugins`), each with where it comes from.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.deps import TeamDep
from api.schemas import auth_responses
from jobs.problem_kinds import PLUGINS
from jobs.spec import DATASET_KINDS, PROBLEMS

router = APIRouter(
    prefix="/v1/problems",
    tags=["problems"],
    responses=auth_responses(store=False),
)


class ProblemKind(BaseModel):
    """One family: its ``problem.kind``, what it is, and the JSON Schema of its options.

    ``source`` says where it comes from: ``builtin``, or ``plugin`` with the installed
    plugin's ``package`` and ``version``.
    """

    kind: str
    description: str
    over_dataset: bool
    json_schema: dict[str, Any]
    source: Literal["builtin", "plugin"]
    package: str | None = Field(default=None, description="the plugin's package")
    version: str | None = Field(default=None, description="the plugin package's version")


class ProblemsPublic(BaseModel):
    """Every problem family a job spec may name."""

    data: list[ProblemKind]
    count: int


def _kind(kind: str, model: type[BaseModel]) -> ProblemKind:
    plugin = PLUGINS.get(kind)
    return ProblemKind(
        kind=kind,
        description=plugin.description if plugin else (model.__doc__ or "").strip(),
        over_dataset=kind in DATASET_KINDS,
        json_schema=model.model_json_schema(),
        source="plugin" if plugin else "builtin",
        package=plugin.package if plugin else None,
        version=plugin.version if plugin else None,
    )


@router.get("", response_model=ProblemsPublic)
def list_problems(team: TeamDep) -> ProblemsPublic:
    """List the problem families with their options' JSON Schema and their source."""
    data = [_kind(kind, model) for kind, model in PROBLEMS.items()]
    return ProblemsPublic(data=data, count=len(data))
