"""A submitted spec's ``problem.dataset``: the team's own data set, fit for the family.

Checked at submit, so that a spec naming another team's data set (or a missing one) is a
422 at ``problem.dataset`` before anything is queued; another team's data set is
indistinguishable from a missing one. The compute budget of a problem over an uploaded data
set depends on its shape, which only the store knows: it is checked here too.
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError
from sqlalchemy.orm import Session

from jobs.budget import BudgetLimits, budget_errors
from jobs.spec import (
    FeatureRegularizationSpec,
    HypercleaningSpec,
    JobSpec,
    MLPSpec,
    TaskInteractionSpec,
    is_dataset_id,
)
from jobs.store import repo
from jobs.store.models import Dataset

__all__ = ["check_dataset_ref", "dataset_sizes"]


def check_dataset_ref(
    session: Session, team_id: uuid.UUID, spec: JobSpec, limits: BudgetLimits
) -> None:
    """Raise a ``ValidationError`` naming the field when the spec's data set does not fit.

    Raises:
        pydantic.ValidationError: no such data set for the team (``problem.dataset``), a
            family or model for another task (``problem.dataset``, ``problem.model``),
            per-group penalties without a ``groups`` array (``problem.per``), or a graph
            over ``max_graph_bytes`` at this data set's size (the field that sets it).
    """
    p = spec.problem
    if not isinstance(
        p, (FeatureRegularizationSpec, MLPSpec, HypercleaningSpec, TaskInteractionSpec)
    ):
        return
    if not is_dataset_id(p.dataset):
        return
    errors: list[InitErrorDetails] = []

    def add(field: str, value: Any, message: str) -> None:
        errors.append({"type": PydanticCustomError("dataset", message),
                       "loc": ("problem", field), "input": value})  # fmt: skip

    repo.lock_team(session, team_id)  # a concurrent delete of it goes first or waits
    row = repo.get_dataset(session, team_id, uuid.UUID(p.dataset))
    if row is None:
        add("dataset", p.dataset, f"no dataset {p.dataset} for this team (GET /v1/datasets)")
    elif isinstance(p, HypercleaningSpec) and row.task != "classification":
        add("dataset", p.dataset, f"hypercleaning needs class labels; {row.name} is {row.task}")
    elif isinstance(p, TaskInteractionSpec):
        names = {a["name"] for a in row.arrays}
        missing = sorted({f"task_{s}" for s in row.rows} - names)
        if missing:
            add("dataset", p.dataset, f"task_interaction needs a task column; {row.name} "
                f"has no {', '.join(missing)}")  # fmt: skip
    elif isinstance(p, FeatureRegularizationSpec):
        if p.model is not None and (p.model == "linear") != (row.task == "regression"):
            add("model", p.model, f"model {p.model!r} does not fit a {row.task} data set")
        if p.model == "logistic" and row.n_classes != 2:
            add("model", p.model, f"logistic needs 2 classes; the data set has {row.n_classes}")
        if p.per == "group" and not any(a["name"] == "groups" for a in row.arrays):
            add("per", p.per, "per='group' needs a 'groups' array in the data set")
    if row is not None and not errors:
        errors = budget_errors(spec, limits, dataset_sizes(spec, row))
    if errors:
        raise ValidationError.from_exception_data("JobSpec", errors)


def dataset_sizes(spec: JobSpec, row: Dataset) -> tuple[int, int, int]:
    """``(state floats, floats of one step's graph, hyperparameters)`` on this data set.

    Rough upper estimates, like ``jobs.budget``'s for the built-in problems: the step's
    rows copied with their bias column, a few arrays of the rows' outputs, the parameters'
    gradients.
    """
    p = spec.problem
    d, n = row.n_features, int(row.rows["train"])
    r = min(spec.inner.batch_size or n, n)
    outputs = 1 if row.task == "regression" or row.n_classes == 2 else row.n_classes
    if isinstance(p, MLPSpec):
        widths = [d, *p.hidden, outputs]
        params = sum((a + 1) * b for a, b in zip(widths[:-1], widths[1:]))
        step = r * d + 4 * r * sum(widths[1:]) + 3 * params
        hparams = len(widths) - 1 + (n if p.example_weights else 0)
    elif isinstance(p, FeatureRegularizationSpec):
        k = row.n_classes if p.model == "softmax" or (p.model is None and outputs > 1) else 1
        params = k * (d + 1)
        step = r * (d + 1) + 4 * r * k + 4 * params
        hparams = d
    elif isinstance(p, TaskInteractionSpec):
        V = max(row.n_tasks, 1)
        params = V * outputs * (d + 1)
        step = r * (d + 1) + 2 * r * V * outputs + 4 * params
        hparams = V * V + 1
    else:  # hypercleaning: every training row each step, one weight each
        params = row.n_classes * (d + 1)
        step = 6 * n * row.n_classes + 2 * n + 4 * params
        hparams = n
    if spec.inner.momentum > 0:
        params *= 2
    if spec.inner.learn_lr:
        hparams += 1
    return params, step + 2 * params, hparams
