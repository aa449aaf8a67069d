"""A study's grid: a base job spec and lists of values at dotted spec paths, expanded.

``{"hypergradient.K": [1, 5, 25], "hypergradient.method": ["truncated", "full"],
"seed": [0, 1, 2]}`` over a base spec is the cartesian product of the lists, each
combination written into a copy of the base and validated as a whole job spec. Every
problem is reported with its path (``grid.hypergradient.K``) and the offending value:

- an unknown path, an empty or non-list value list, more combinations than the limit;
- a value the spec rejects (out of bounds, ``K > inner.steps``, ...).

A combination in which a swept path does not apply (``K`` with ``method: full``) is not an
error: the path is dropped from it, the first such combination is kept (that path shown as
``null`` in its ``values``) and the ones that would only repeat it are skipped and listed
with the reason. When a union tag (``hypergradient.method``, ``problem.kind``) is swept,
base options the chosen member does not take are dropped as well.

This module imports no torch: the API expands grids without the estimator library.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from jobs.specs.job import METHODS, PROBLEMS, JobSpec, field_errors, parse_spec

__all__ = ["Expansion", "GridError", "Member", "expand", "grid_paths", "replicate_paths"]

# the union fields of a spec: the tag that picks the option model, and the models
_UNIONS: dict[str, tuple[str, Mapping[str, type[BaseModel]]]] = {
    "problem": ("kind", PROBLEMS),
    "hypergradient": ("method", METHODS),
}


class GridError(ValueError):
    """A grid that cannot be expanded; ``errors`` in ``jobs.specs.job.field_errors``' shape."""

    def __init__(self, errors: list[dict[str, Any]], *, limit: int | None = None):
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))
        self.errors = errors
        self.limit = limit


@dataclass(frozen=True)
class Member:
    """One combination: the swept values (``None`` where a path did not apply) and its spec."""

    values: dict[str, Any]
    spec: JobSpec


@dataclass(frozen=True)
class Expansion:
    """The members of a grid, and the combinations skipped with why."""

    members: list[Member]
    skipped: list[dict[str, Any]] = field(default_factory=list)


def _error(path: str, message: str, kind: str = "value_error") -> dict[str, Any]:
    loc = ["grid", path] if path else ["grid"]
    return {"field": ".".join(loc), "loc": loc, "message": message, "type": kind}


def grid_paths() -> set[str]:
    """Every dotted path a grid may sweep (the fields of the spec and of each union member)."""
    paths: set[str] = set()
    for name, info in JobSpec.model_fields.items():
        if name in _UNIONS:
            for model in _UNIONS[name][1].values():
                paths.update(f"{name}.{f}" for f in model.model_fields)
            continue
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            paths.update(f"{name}.{f}" for f in ann.model_fields)
        elif name != "name":  # each member is named after its values
            paths.add(name)
    return paths


def replicate_paths(paths: Sequence[str]) -> list[str]:
    """The swept paths that only repeat an experiment (seeds): averaged over, not grouped by."""
    return [p for p in paths if p == "seed" or p.endswith(".seed")]


def _check_shape(grid: Mapping[str, Any], max_members: int) -> None:
    if not grid:
        raise GridError([_error("", "the grid is empty: give at least one path and its values")])
    known = grid_paths()
    errors = []
    for path, values in grid.items():
        if path not in known:
            near = sorted(p for p in known if p.split(".")[-1] == path.split(".")[-1])
            hint = f" (did you mean {', '.join(near)}?)" if near else ""
            errors.append(_error(path, f"unknown spec path {path!r}{hint}", "unknown_path"))
        elif not isinstance(values, list):
            errors.append(_error(path, f"must be a list of values, got {values!r}", "list_type"))
        elif not values:
            errors.append(_error(path, "the list of values is empty", "too_short"))
        elif len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
            errors.append(_error(path, f"lists a value twice: {values!r}", "duplicate"))
    if errors:
        raise GridError(errors)
    n = math.prod(len(v) for v in grid.values())
    if n > max_members:
        sizes = " x ".join(f"{len(v)} ({p})" for p, v in grid.items())
        raise GridError(
            [_error("", f"{sizes} = {n} combinations, over the limit of {max_members} "
                        "(max_study_members)", "too_many")],
            limit=max_members,
        )  # fmt: skip


def _set(data: dict[str, Any], path: str, value: Any) -> None:
    head, _, rest = path.partition(".")
    if not rest:
        data[head] = copy.deepcopy(value)
        return
    sub = data.get(head)
    if not isinstance(sub, dict):
        sub = data[head] = {}
    sub[rest] = copy.deepcopy(value)


def _applies(data: dict[str, Any], path: str) -> bool:
    head, _, rest = path.partition(".")
    if head not in _UNIONS or not rest:
        return True
    tag, models = _UNIONS[head]
    model = models.get(str(data.get(head, {}).get(tag)))
    return model is None or rest in model.model_fields


def _strip_foreign(data: dict[str, Any], swept: set[str]) -> None:
    """Drop base options the swept union member does not take (``K`` under ``full``)."""
    for head, (tag, models) in _UNIONS.items():
        if f"{head}.{tag}" not in swept or not isinstance(data.get(head), dict):
            continue
        model = models.get(str(data[head].get(tag)))
        if model is not None:
            data[head] = {k: v for k, v in data[head].items() if k in model.model_fields}


def _rejections(exc: ValidationError, values: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for err in field_errors(exc):
        path = err["field"]
        if path in values:
            msg = f"value {values[path]!r} is rejected: {err['message']}"
            out.append(_error(path, msg, err["type"]))
        else:
            loc = ["base", *err["loc"]]
            out.append({**err, "field": ".".join(loc), "loc": loc})
    return out


def expand(
    base: Mapping[str, Any],
    grid: Mapping[str, Any],
    *,
    max_members: int,
    name: str,
    admit: Callable[[dict[str, Any]], JobSpec] = parse_spec,
) -> Expansion:
    """The members of ``grid`` over ``base``, in the order of the grid's lists.

    Args:
        base: a job spec as a dict (its ``name`` is replaced per member).
        grid: dotted path -> list of values.
        max_members: the most combinations allowed (``max_study_members``).
        name: the study's name; member ``i`` is called ``"<name> [path=value, ...]"``.
        admit: admits one member's spec, raising a ``ValidationError`` naming each bad
            field (the service's :func:`jobs.specs.admission.admit`: data set, fit, budget);
            by default it is only parsed.

    Raises:
        GridError: every problem found, each naming its path and value.
    """
    _check_shape(grid, max_members)
    paths = list(grid)
    swept = set(paths)
    members: list[Member] = []
    skipped: list[dict[str, Any]] = []
    seen: dict[str, dict[str, Any]] = {}
    errors: list[dict[str, Any]] = []
    for combo in itertools.product(*(grid[p] for p in paths)):
        values = dict(zip(paths, combo))
        data = copy.deepcopy(dict(base))
        for path, value in values.items():
            _set(data, path, value)
        _strip_foreign(data, swept)
        moot = [p for p in paths if not _applies(data, p)]
        for p in moot:
            data[p.split(".")[0]].pop(p.partition(".")[2], None)
            values[p] = None
        label = ", ".join(f"{p}={json.dumps(v)}" for p, v in values.items() if v is not None)
        data["name"] = f"{name} [{label}]"[:200]
        key = json.dumps({k: v for k, v in data.items() if k != "name"}, sort_keys=True)
        if key in seen:
            reason = "; ".join(
                f"{p} does not apply to {_tag_of(p)}={data[p.split('.')[0]].get(_tag_key(p))!r}"
                for p in moot
            )
            skipped.append({"values": dict(zip(paths, combo)),
                            "reason": f"{reason}: repeats {seen[key]}"})  # fmt: skip
            continue
        seen[key] = values
        try:
            spec = admit(data)
        except ValidationError as exc:
            for err in _rejections(exc, values):
                if err not in errors:
                    errors.append(err)
            continue
        members.append(Member(values=values, spec=spec))
    if errors:
        raise GridError(errors)
    return Expansion(members=members, skipped=skipped)


def _tag_key(path: str) -> str:
    return _UNIONS[path.split(".")[0]][0]


def _tag_of(path: str) -> str:
    head = path.split(".")[0]
    return f"{head}.{_tag_key(path)}"
