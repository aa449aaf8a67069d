"""Search around this job: a search study built from one job's spec.

The space is the neighbourhood of the job's own settings that a hypergradient cannot reach:
the outer learning rate on a log scale from a third to three times the job's, and, for
K-RMD (``truncated``), ``K`` among half, once and twice the job's and the inner steps from
half to twice the job's ``T`` (never below the largest ``K``, so every corner of the space
is admitted). The job itself warm-starts the search: when it succeeded, the sampler sees it
as a finished trial at the centre. Pure: the API admits the result as any study.
"""

from __future__ import annotations

import copy
import math
import uuid
from collections.abc import Mapping
from typing import Any

__all__ = ["LR_FACTOR", "around"]

#: the outer learning rate is searched in ``[lr / LR_FACTOR, lr * LR_FACTOR]`` (log)
LR_FACTOR = 3.0
_LR_MAX = 1e3  # the spec's bound on outer.lr
_STEPS_MAX = 100_000  # the spec's bound on inner.steps


def around(
    spec: Mapping[str, Any],
    job_id: uuid.UUID,
    *,
    name: str,
    n_trials: int = 20,
    max_concurrent: int = 2,
    sampler: str = "tpe",
    pruner: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """A study body (``POST /v1/studies``) searching around ``spec``, warm-started by the job.

    Args:
        spec: the job's (admitted) spec: the study's base.
        job_id: the job, whose result the sampler sees first.
        name: the study's name.
        n_trials: the search's trial count.
        max_concurrent: members running at once.
        sampler: the search's sampler (``tpe``, ...).
        pruner: the search's pruner (``{"kind": "median"}``), or none.
        seed: the sampler's seed.

    Returns:
        The body, with ``search.params`` over ``outer.lr`` and, for K-RMD, ``hypergradient.K``
        and ``inner.steps``.
    """
    base = copy.deepcopy(dict(spec))
    lr = float(base.get("outer", {}).get("lr", 0.1))
    params: dict[str, Any] = {
        "outer.lr": {"type": "float", "low": lr / LR_FACTOR,
                     "high": min(lr * LR_FACTOR, _LR_MAX), "log": True},
    }  # fmt: skip
    method = base.get("hypergradient", {})
    steps = base.get("inner", {}).get("steps")
    if method.get("method") == "truncated" and isinstance(steps, int):
        K = int(method["K"])
        ks = sorted({max(1, K // 2), K, min(2 * K, steps)})
        if len(ks) > 1:
            params["hypergradient.K"] = {"type": "categorical", "choices": ks}
        low, high = max(ks[-1], math.ceil(steps / 2)), min(2 * steps, _STEPS_MAX)
        if low < high:
            params["inner.steps"] = {"type": "int", "low": low, "high": high}
    search: dict[str, Any] = {
        "params": params,
        "sampler": sampler,
        "n_trials": n_trials,
        "max_concurrent": max_concurrent,
        "seed": seed,
        "warm_start": {"jobs": [str(job_id)]},
    }
    if pruner is not None:
        search["pruner"] = dict(pruner)
    return {"name": name, "base": base, "search": search}
