"""The data sets a spec may name without uploading one, and what admission knows of them.

scikit-learn's bundled tables (``digits``, ``diabetes``, ``breast_cancer``) work wherever a
spec names a data set; the worker splits them 60/20/20 (``worker.datasets.builtin_table``),
and :data:`TABLES` describes them as the store describes an upload, so that the same fit
checks and budget sizes apply (a test checks these against the loaded arrays).
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field

from jobs.kinds.base import DatasetInfo

__all__ = [
    "BUILTIN_TABLES",
    "TABLES",
    "UUID_PATTERN",
    "DatasetRef",
    "is_dataset_id",
]

UUID_PATTERN = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def _table(
    name: str, task: str, classes: int, features: int, n: int, tasks: int = 0
) -> DatasetInfo:
    # the worker's split: the first 60% of a permutation train, the next 20% val, the rest test
    a, b = int(0.6 * n), int(0.8 * n)
    rows = {"train": a, "val": b - a, "test": n - b}
    names = {f"{p}_{s}" for p in ("x", "y") for s in rows}
    if tasks:
        names |= {f"task_{s}" for s in rows}
    return DatasetInfo(name, name, task, classes, features, rows, tasks, frozenset(names))


#: the built-in tables: ``diabetes`` has a task column, the patients' sex
TABLES: dict[str, DatasetInfo] = {
    "digits": _table("digits", "classification", 10, 64, 1797),
    "diabetes": _table("diabetes", "regression", 0, 10, 442, tasks=2),
    "breast_cancer": _table("breast_cancer", "classification", 2, 30, 569),
}
BUILTIN_TABLES = tuple(TABLES)

DatasetRef = Annotated[
    str,
    Field(
        pattern=f"^({UUID_PATTERN}|{'|'.join(BUILTIN_TABLES)})$",
        description="a data set id (POST /v1/datasets) of the team, or a built-in table",
    ),
]


def is_dataset_id(ref: str) -> bool:
    """Whether a ``dataset`` option names an uploaded data set (an id), not a built-in one."""
    return re.fullmatch(UUID_PATTERN, ref) is not None
