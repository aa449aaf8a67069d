"""Warm start: the finished members of earlier studies (and single jobs) a sampler sees first.

Read once, when the study is created, into a snapshot kept on the study row
(``studies.warm_start``): an earlier study may still be running or be deleted later, and a
sampler asked again after a restart must see the same history. A source job is used when
it succeeded, its summary has every objective of the new search, and its value at each
searched path (read from its spec, so a grid's fixed paths count too) lies in the new
space; the others are skipped and counted by reason. Pure Python: no Optuna, no SQL.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from jobs.status import JobStatus, TrialStatus
from jobs.store.models import Job
from jobs.studies.search.space import CategoricalParam, FloatParam, IntParam, Param, SearchSpec
from jobs.studies.search.trials import Trial, objective_values

__all__ = ["SKIP_REASONS", "fits", "snapshot", "spec_value", "warm_trials"]

#: why a source job was not shown to the sampler
SKIP_REASONS = ("not_succeeded", "no_objective", "outside_space")
_MISSING = object()


def spec_value(spec: Mapping[str, Any], path: str) -> Any:
    """The value at dotted ``path`` of a job spec; a sentinel (not ``None``) when absent."""
    node: Any = spec
    for key in path.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return _MISSING
        node = node[key]
    return node


def fits(p: Param, value: Any) -> bool:
    """Whether ``value`` is a point of ``p`` (in range, on its step, or one of its choices)."""
    if isinstance(p, CategoricalParam):
        return any(json.dumps(value) == json.dumps(c) for c in p.choices)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(p, IntParam):
        ok = isinstance(value, int) or float(value).is_integer()
        return ok and p.low <= value <= p.high and (int(value) - p.low) % p.step == 0
    assert isinstance(p, FloatParam)
    return math.isfinite(value) and p.low <= value <= p.high


def snapshot(search: SearchSpec, jobs: Iterable[Job]) -> dict[str, Any]:
    """The warm trials ``jobs`` give ``search``, and how many were skipped for what.

    ``jobs`` in the order the sampler is to see them; a job listed twice counts once.

    Returns:
        ``{"trials": [{"job", "params", "values"}], "skipped": {reason: count}}``.
    """
    trials: list[dict[str, Any]] = []
    skipped: Counter[str] = Counter()
    seen: set[str] = set()
    for job in jobs:
        if str(job.id) in seen:
            continue
        seen.add(str(job.id))
        if job.status != JobStatus.SUCCEEDED:
            skipped["not_succeeded"] += 1
            continue
        values = objective_values(job.summary, search.objectives)
        if values is None or not all(math.isfinite(v) for v in values):
            skipped["no_objective"] += 1
            continue
        params = {path: spec_value(job.spec, path) for path in sorted(search.params)}
        if not all(fits(p, params[path]) for path, p in search.params.items()):
            skipped["outside_space"] += 1
            continue
        trials.append({"job": str(job.id), "params": params, "values": values})
    return {"trials": trials, "skipped": {r: skipped[r] for r in SKIP_REASONS}}


def warm_trials(warm: Mapping[str, Any] | None) -> list[Trial]:
    """A study's stored snapshot as complete trials (numbered from 0, before its own)."""
    rows = (warm or {}).get("trials", [])
    return [
        Trial(
            number=i, params=dict(t["params"]), state=TrialStatus.COMPLETE, values=list(t["values"])
        )
        for i, t in enumerate(rows)
    ]
