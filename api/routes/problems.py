"""``/v1/problems``: the problem families a spec may name, each with its JSON Schema.

Built-in families and those an installed plugin adds (entry-point group
``bilevel.problems``, :mod:`jobs.plugins`), each with where it comes from.
"""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import TeamDep
from api.openapi import auth_responses
from api.schemas.problems import ProblemKind, ProblemsPublic
from jobs.kinds.registry import KINDS

router = APIRouter(
    prefix="/v1/problems",
    tags=["problems"],
    responses=auth_responses(store=False),
)


def _kind(name: str) -> ProblemKind:
    kind = KINDS[name]
    source = kind.source() or {}
    return ProblemKind(
        kind=name,
        description=kind.description,
        over_dataset=kind.reads_dataset,
        json_schema=kind.options.model_json_schema(),
        source="builtin" if kind.builtin else "plugin",
        package=source.get("package"),
        version=source.get("version"),
    )


@router.get("", response_model=ProblemsPublic)
def list_problems(team: TeamDep) -> ProblemsPublic:
    """List the problem families with their options' JSON Schema and their source."""
    data = [_kind(name) for name in KINDS]
    return ProblemsPublic(data=data, count=len(data))
