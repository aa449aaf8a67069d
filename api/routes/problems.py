"""``/v1/problems``: the problem families a spec may name, each with its JSON Schema.

Built-in families and those an installed plugin adds (entry-point group
``bilevel.problems``, :mod:`jobs.plugins`), each with where it comes from.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from api.deps import TeamDep
from api.openapi import auth_responses
from api.schemas.problems import ProblemKind, ProblemsPublic
from jobs.problem_kinds import PLUGINS
from jobs.spec import DATASET_KINDS, PROBLEMS

router = APIRouter(
    prefix="/v1/problems",
    tags=["problems"],
    responses=auth_responses(store=False),
)


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
