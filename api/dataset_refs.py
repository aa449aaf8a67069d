"""A submitted spec's ``problem.dataset``: the team's own data set, fit for the family.

Checked at submit, so that a spec naming another team's data set (or a missing one) is a
422 at ``problem.dataset`` before anything is queued; another team's data set is
indistinguishable from a missing one.
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError
from sqlalchemy.orm import Session

from jobs import repo
from jobs.spec import BUILTIN_TABLES, FeatureRegularizationSpec, JobSpec, MLPSpec

__all__ = ["check_dataset_ref"]


def check_dataset_ref(session: Session, team_id: uuid.UUID, spec: JobSpec) -> None:
    """Raise a ``ValidationError`` naming the field when the spec's data set does not fit.

    Raises:
        pydantic.ValidationError: no such data set for the team (``problem.dataset``), a
            model for another task (``problem.model``), per-group penalties without a
            ``groups`` array (``problem.per``).
    """
    p = spec.problem
    if not isinstance(p, (FeatureRegularizationSpec, MLPSpec)) or p.dataset in BUILTIN_TABLES:
        return
    errors: list[InitErrorDetails] = []

    def add(field: str, value: Any, message: str) -> None:
        errors.append({"type": PydanticCustomError("dataset", message),
                       "loc": ("problem", field), "input": value})  # fmt: skip

    repo.lock_team(session, team_id)  # a concurrent delete of it goes first or waits
    row = repo.get_dataset(session, team_id, uuid.UUID(p.dataset))
    if row is None:
        add("dataset", p.dataset, f"no dataset {p.dataset} for this team (GET /v1/datasets)")
    elif isinstance(p, FeatureRegularizationSpec):
        if p.model is not None and (p.model == "linear") != (row.task == "regression"):
            add("model", p.model, f"model {p.model!r} does not fit a {row.task} data set")
        if p.model == "logistic" and row.n_classes != 2:
            add("model", p.model, f"logistic needs 2 classes; the data set has {row.n_classes}")
        if p.per == "group" and not any(a["name"] == "groups" for a in row.arrays):
            add("per", p.per, "per='group' needs a 'groups' array in the data set")
    if errors:
        raise ValidationError.from_exception_data("JobSpec", errors)
