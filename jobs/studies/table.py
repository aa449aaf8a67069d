"""A study's aggregate table: its members' final results grouped by the swept values.

The layout of the paper's Table 2: one row per setting of the grouped paths (``K``,
``method``), the replicate paths (seeds) averaged over. Each final metric is given as mean
and sample standard deviation over the setting's succeeded members, with seconds per
hyper-iteration and peak hypergradient memory from their summaries. Pure Python: the API,
the CLI and the tests compute the same table from the same member records.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from jobs.status import TERMINAL, JobStatus

__all__ = ["COST_KEYS", "aggregate", "final_values", "mean_std", "study_status"]

#: Summary keys of a job's cost (worker.progress writes them), aggregated like the metrics.
COST_KEYS = ("s_per_iteration", "peak_bytes")


def mean_std(xs: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (``ddof=1``); ``None`` where undefined."""
    if not xs:
        return None, None
    mean = math.fsum(xs) / len(xs)
    if len(xs) < 2:
        return mean, None
    return mean, math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (len(xs) - 1))


def final_values(summary: Mapping[str, Any] | None) -> dict[str, float]:
    """The numbers a member contributes: ``final_outer_loss``, its metrics and its cost."""
    s = summary or {}
    out: dict[str, float] = {}
    for key in ("final_outer_loss", *COST_KEYS):
        v = s.get(key)
        if isinstance(v, (int, float)) and math.isfinite(v):
            out[key] = float(v)
    for key, v in (s.get("metrics") or {}).items():
        if isinstance(v, (int, float)) and math.isfinite(v):
            out[str(key)] = float(v)
    return out


def aggregate(
    members: Iterable[Mapping[str, Any]], group_by: Sequence[str]
) -> list[dict[str, Any]]:
    """One row per setting of ``group_by``, in the order the settings first appear.

    Args:
        members: each with ``values`` (path -> value), ``status`` and ``summary``.
        group_by: the swept paths a row is a setting of.

    Returns:
        Rows ``{"values", "members", "succeeded", "stats": {name: {"mean", "std", "n"}}}``;
        ``stats`` covers the succeeded members only.
    """
    rows: dict[str, dict[str, Any]] = {}
    samples: dict[str, dict[str, list[float]]] = {}
    for m in members:
        values = {p: m["values"].get(p) for p in group_by}
        key = json.dumps(values, sort_keys=True)
        row = rows.setdefault(key, {"values": values, "members": 0, "succeeded": 0})
        row["members"] += 1
        bucket = samples.setdefault(key, {})
        if m["status"] != JobStatus.SUCCEEDED:
            continue
        row["succeeded"] += 1
        for name, v in final_values(m.get("summary")).items():
            bucket.setdefault(name, []).append(v)
    out = []
    for key, row in rows.items():
        stats = {}
        for name, xs in sorted(samples[key].items()):
            mean, std = mean_std(xs)
            stats[name] = {"mean": mean, "std": std, "n": len(xs)}
        out.append({**row, "stats": stats})
    return out


def study_status(counts: Counter[str]) -> JobStatus:
    """A study's status from its members': running while any runs, then how they ended.

    ``failed`` if any failed, else ``cancelled`` if any was cancelled, else ``succeeded``.
    """
    total = sum(counts.values())
    if total and sum(counts[s] for s in TERMINAL) == total:
        for status in (JobStatus.FAILED, JobStatus.CANCELLED):
            if counts[status]:
                return status
        return JobStatus.SUCCEEDED
    return JobStatus.RUNNING if counts[JobStatus.RUNNING] else JobStatus.QUEUED
