"""Bodies of ``/v1/problems``: the problem families a spec may name, with their options."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = ["ProblemKind", "ProblemsPublic"]


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
