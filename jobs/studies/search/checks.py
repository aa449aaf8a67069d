"""A search's checks beyond types: ranges, paths, budget, and the members it can make.

Each problem is reported at its field (``search.params.outer.lr.low``) with the bad value,
in the shape of :func:`jobs.specs.job.field_errors`, raised together as a
:class:`jobs.studies.grid.GridError` (the API's 422). The space's corners are admitted as members
would be (every range at its low end, then at its high end, and each categorical choice),
so a base spec that no suggestion could run with is refused at creation.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError

from jobs.specs.job import JobSpec
from jobs.studies.grid import GridError, grid_paths, member_data, rejections
from jobs.studies.search.space import CategoricalParam, FloatParam, IntParam, SearchSpec

__all__ = ["check_search", "corners"]


def _error(field: str, message: str, kind: str = "value_error") -> dict[str, Any]:
    loc = ["search", *field.split(".", 1)] if field else ["search"]
    if field.startswith("params."):
        loc = ["search", "params", field[len("params.") :]]
    return {"field": f"search.{field}" if field else "search", "loc": loc, "message": message,
            "type": kind}  # fmt: skip


def _param_errors(path: str, p: FloatParam | IntParam | CategoricalParam) -> list[dict[str, Any]]:
    at = f"params.{path}"
    if isinstance(p, CategoricalParam):
        if len({json.dumps(c) for c in p.choices}) != len(p.choices):
            return [_error(f"{at}.choices", f"lists a choice twice: {p.choices!r}", "duplicate")]
        return []
    out = []
    if p.low >= p.high:
        out.append(_error(f"{at}.high", f"the range is empty: high={p.high!r} must be greater "
                                        f"than low={p.low!r}", "empty_range"))  # fmt: skip
    if p.log and p.low <= 0:
        out.append(_error(f"{at}.low", f"a log scale needs low > 0, got {p.low!r}", "log_low"))
    if isinstance(p, IntParam) and p.log and p.step != 1:
        out.append(_error(f"{at}.step", f"a log scale takes step 1, got {p.step}", "log_step"))
    return out


def corners(search: SearchSpec) -> list[dict[str, Any]]:
    """The points admitted at creation: all lows, all highs, and each categorical choice.

    A choice is admitted with every other path at its low end.
    """

    def end(p: FloatParam | IntParam | CategoricalParam, high: bool) -> Any:
        if isinstance(p, CategoricalParam):
            return p.choices[-1 if high else 0]
        if isinstance(p, IntParam):
            return p.low + (p.high - p.low) // p.step * p.step if high else p.low
        return p.high if high else p.low

    lows = {k: end(p, False) for k, p in search.params.items()}
    out = [lows, {k: end(p, True) for k, p in search.params.items()}]
    for k, p in search.params.items():
        if isinstance(p, CategoricalParam):
            out.extend({**lows, k: c} for c in p.choices[1:-1])
    return out


def _budget_errors(search: SearchSpec, max_members: int) -> list[dict[str, Any]]:
    errors: list[dict[str, Any]] = []
    if search.sampler == "grid" and search.n_trials is not None:
        size = math.prod(
            len(p.choices) if isinstance(p, CategoricalParam) else (p.high - p.low) // p.step + 1
            for p in search.params.values()
            if not isinstance(p, FloatParam)
        )
        if search.n_trials > size:
            errors.append(_error("n_trials", f"{search.n_trials} trials, more than the grid's "
                                 f"{size} points", "too_many"))  # fmt: skip
    if search.n_trials is None and search.budget is None:
        errors.append(_error("n_trials", "give n_trials or a budget (iterations or seconds)",
                             "missing"))  # fmt: skip
    if search.budget is not None and search.budget.iterations is search.budget.seconds is None:
        errors.append(_error("budget", "give iterations or seconds", "missing"))
    if search.n_trials is not None and search.n_trials > max_members:
        errors.append(_error("n_trials", f"{search.n_trials} trials, over the limit of "
                             f"{max_members} (max_study_members)", "too_many"))  # fmt: skip
    return errors


def check_search(
    search: SearchSpec,
    base: Mapping[str, Any],
    *,
    name: str,
    max_members: int,
    admit: Callable[[dict[str, Any]], JobSpec],
) -> None:
    """Raise every problem with ``search`` over ``base``, each at its field.

    Args:
        search: the parsed search.
        base: the study's base spec.
        name: the study's name (members are named after it).
        max_members: the most members a study may have (``max_study_members``).
        admit: the service's admission of one member spec.

    Raises:
        GridError: the problems found (paths unknown, empty ranges, ``log`` with
            ``low <= 0``, no budget, a grid sampler over a real range, corners refused).
    """
    errors: list[dict[str, Any]] = []
    if not search.params:
        errors.append(_error("params", "the space is empty: give at least one path", "too_short"))
    known = grid_paths()
    for path, p in search.params.items():
        if path not in known:
            near = sorted(k for k in known if k.split(".")[-1] == path.split(".")[-1])
            hint = f" (did you mean {', '.join(near)}?)" if near else ""
            errors.append(_error(f"params.{path}", f"unknown spec path {path!r}{hint}",
                                 "unknown_path"))  # fmt: skip
            continue
        errors.extend(_param_errors(path, p))
        if search.sampler == "grid" and isinstance(p, FloatParam):
            errors.append(_error(f"params.{path}", "the grid sampler needs int or categorical "
                                 "params, not a float range", "grid_float"))  # fmt: skip
    errors.extend(_budget_errors(search, max_members))
    if errors:
        raise GridError(errors)
    swept = set(search.params)
    for values in corners(search):
        data, values = member_data(base, values, swept, name)
        try:
            admit(data)
        except ValidationError as exc:
            for err in rejections(exc, values, prefix="search.params"):
                if err not in errors:
                    errors.append(err)
    if errors:
        raise GridError(errors)
