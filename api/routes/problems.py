"""``/v1/problems``: the problem families a spec may name, each with its JSON Schema."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from api.deps import TeamDep
from api.schemas import problem_doc
from jobs.spec import DATASET_KINDS, PROBLEMS

router = APIRouter(
    prefix="/v1/problems",
    tags=["problems"],
    responses={
        401: problem_doc("missing, unknown or revoked API key"),
        429: problem_doc("rate limit exceeded, or too many wrong keys; see Retry-After"),
    },
)


class ProblemKind(BaseModel):
    """One family: its ``problem.kind``, what it is, and the JSON Schema of its options."""

    kind: str
    description: str
    over_dataset: bool
    json_schema: dict[str, Any]


class ProblemsPublic(BaseModel):
    """Every problem family a job spec may name."""

    data: list[ProblemKind]
    count: int


@router.get("", response_model=ProblemsPublic)
def list_problems(team: TeamDep) -> ProblemsPublic:
    """List the problem families with their options' JSON Schema."""
    data = [
        ProblemKind(
            kind=kind,
            description=(model.__doc__ or "").strip(),
            over_dataset=kind in DATASET_KINDS,
            json_schema=model.model_json_schema(),
        )
        for kind, model in PROBLEMS.items()
    ]
    return ProblemsPublic(data=data, count=len(data))
