"""The one admission of a job spec: every entry calls :func:`admit`, so all agree.

The job route (``POST /v1/jobs``), every member of a study (``POST /v1/studies``),
``bilevel run`` and the worker's re-check before it runs a job admit a spec alike:

1. the plugin the job was submitted with is installed and was not refused (the worker);
2. the spec parses (types, bounds, the kind's options) and its fields agree
   (:func:`jobs.specs.job.spec_errors`: the method against the inner steps, the kind's checks);
3. the data set it names exists for the team (a built-in table always does) and has what
   the kind needs (:meth:`~jobs.kinds.base.ProblemKind.fit`), and its batch sizes are no
   larger than the splits they cut (:func:`jobs.specs.job.batch_size_errors`);
4. it fits the compute budget, sized from the kind and that data set (:mod:`jobs.specs.budget`).

Every problem found is raised together as one ``ValidationError`` located at the field to
change, which the API answers as a 422 naming it (a study names ``base.<path>`` or
``grid.<path>``, :func:`jobs.studies.grid.expand`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic_core import InitErrorDetails

from jobs.kinds.base import DatasetInfo, field_error, raise_errors
from jobs.kinds.registry import check_installed, kind_of
from jobs.kinds.tables import TABLES, is_dataset_id
from jobs.specs.budget import BudgetLimits, budget_errors
from jobs.specs.job import JobSpec, batch_size_errors, parse_spec, spec_errors

__all__ = ["DatasetLookup", "admit", "dataset_errors"]

#: what the store knows of the team's data set with this id; ``None``: the team has none
DatasetLookup = Callable[[str], DatasetInfo | None]


def admit(
    spec: JobSpec | Mapping[str, Any] | str | bytes,
    *,
    limits: BudgetLimits | None = None,
    datasets: DatasetLookup | None = None,
    plugin: Mapping[str, Any] | None = None,
) -> JobSpec:
    """The spec, admitted: parsed, consistent, its data set fit, within the budget.

    Args:
        spec: a parsed spec, or one as a dict or JSON text.
        limits: the compute budget; ``None`` skips it (the worker re-checks what the API
            admitted under its own settings).
        datasets: the team's data sets by id; ``None`` where there is no store
            (``bilevel run``): a spec naming an uploaded data set is refused.
        plugin: the plugin a stored job was submitted with (``{"package", "version"}``).

    Raises:
        pydantic.ValidationError: every problem, each at its field.
        jobs.plugins.PluginMissing: the job's plugin is not installed here.
        jobs.plugins.PluginError: it is installed, but its factory was refused at load.
    """
    if not isinstance(spec, JobSpec):
        if isinstance(spec, Mapping):
            check_installed(spec, plugin)
        spec = parse_spec(spec)
    else:
        check_installed(spec.model_dump(), plugin)
        raise_errors(spec_errors(spec))
    data, errors = _dataset(spec, datasets)
    if not errors:
        errors = batch_size_errors(spec, data)
    if not errors and limits is not None:
        errors = budget_errors(spec, limits, data)
    raise_errors(errors)
    return spec


def dataset_errors(spec: JobSpec, datasets: DatasetLookup | None) -> list[InitErrorDetails]:
    """What is wrong with the data set ``spec`` names (none when it names none)."""
    return _dataset(spec, datasets)[1]


def _dataset(
    spec: JobSpec, datasets: DatasetLookup | None
) -> tuple[DatasetInfo | None, list[InitErrorDetails]]:
    kind = kind_of(spec.problem)
    named = kind.dataset(spec.problem)
    if named is None:
        return None, []
    option, ref = named
    loc = ("problem", option)
    data = TABLES.get(ref)
    if data is None:
        if not is_dataset_id(ref):
            tables = ", ".join(TABLES)
            message = f"{option} must be a data set's id or one of {tables}, got {ref!r}"
            return None, [field_error(loc, ref, message, "dataset")]
        if datasets is None:
            message = f"data set {ref} is uploaded to a service: submit the job there"
            return None, [field_error(loc, ref, message, "dataset")]
        data = datasets(ref)
        if data is None:
            message = f"no dataset {ref} for this team (GET /v1/datasets)"
            return None, [field_error(loc, ref, message, "dataset")]
    return data, kind.fit(spec.problem, data)
