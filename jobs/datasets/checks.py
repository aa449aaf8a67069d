"""What an uploaded data set must satisfy, checked once at upload, each failure naming its array.

A data set holds, per split ``train``, ``val`` (both required) and ``test`` (optional):

- ``x_<split>``: features, ``[n, ...]`` (flattened to ``[n, d]``; ``d`` equal across splits);
- ``y_<split>``: ``[n]`` targets: integer (or boolean) class labels ``0..C-1`` for a
  classification set, where ``C - 1`` is ``y_train``'s largest label; floating point for a
  regression set; the same kind in every split;
- ``task_<split>`` (optional): ``[n]`` integer task ids ``>= 0`` (multi-task problems);
- ``groups`` (optional): ``[d]`` integer feature groups ``>= 0`` (per-group penalties).

Every value must be finite. Nothing else may be in the file, so a typo (``x_valid``) is an
error rather than an ignored array.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobs.datasets.files import FORMATS, ArrayInfo, DatasetFileError, read_arrays

__all__ = ["REQUIRED", "SPLITS", "DatasetDescription", "describe_file"]

SPLITS = ("train", "val", "test")
REQUIRED = ("x_train", "y_train", "x_val", "y_val")
_ALLOWED = {f"{p}_{s}" for p in ("x", "y", "task") for s in SPLITS} | {"groups"}
MAX_CLASSES = 100_000


@dataclass
class _Stats:
    finite: bool = True
    low: float = math.inf
    high: float = -math.inf
    integral: bool = True


@dataclass
class DatasetDescription:
    """What an accepted file holds: its arrays and what they make.

    Attributes:
        arrays: ``[{"name", "dtype", "shape"}]`` in file order.
        task: ``"classification"`` or ``"regression"``.
        n_classes: ``C`` for classification, else 0.
        n_features: ``d``.
        rows: split -> examples.
        n_tasks: ``max(task_train) + 1`` when the file has a task column, else 0.
    """

    arrays: list[dict[str, Any]] = field(default_factory=list)
    task: str = "regression"
    n_classes: int = 0
    n_features: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    n_tasks: int = 0


def describe_file(path: str | Path) -> DatasetDescription:
    """Stream every array of the file once and check the rules of the module docstring.

    Raises:
        DatasetFileError: the first rule broken, naming its array (``.array``).
    """
    infos: dict[str, ArrayInfo] = {}
    stats: dict[str, _Stats] = {}
    for info, chunks in read_arrays(path):
        if info.name not in _ALLOWED:
            raise DatasetFileError(
                f"unknown array {info.name!r}; a data set holds {', '.join(sorted(_ALLOWED))}",
                info.name,
            )
        if info.name in infos:
            raise DatasetFileError(f"array {info.name!r} appears twice", info.name)
        infos[info.name] = info
        stats[info.name] = _scan(info, chunks)
    return _describe(infos, stats)


def _scan(info: ArrayInfo, chunks: Any) -> _Stats:
    """One pass over an array's bytes: finiteness, and the range of integer arrays."""
    st = _Stats()
    itemsize, fmt = FORMATS[info.dtype]
    native: Any = fmt[1:]  # the machine's order is little-endian wherever torch runs
    floating = info.dtype.startswith("float")
    for block in chunks:
        if floating and itemsize == 2:
            values: Any = [v for (v,) in struct.iter_unpack(fmt, block)]
        else:
            values = memoryview(block).cast(native)
        if floating:
            # a sum is NaN or infinite when any term is (or on overflow: then look closer)
            total = sum(values)
            if not math.isfinite(total) and not all(map(math.isfinite, values)):
                st.finite = False
                return st
            if info.name.startswith(("y_", "task_", "groups")):
                st.integral = st.integral and all(float(v).is_integer() for v in values)
        if len(values) and not info.name.startswith("x_"):
            st.low, st.high = min(st.low, min(values)), max(st.high, max(values))
    return st


def _describe(infos: dict[str, ArrayInfo], stats: dict[str, _Stats]) -> DatasetDescription:
    for name in infos:
        if not stats[name].finite:
            raise DatasetFileError(f"array {name!r} holds NaN or infinite values", name)
    for name in REQUIRED:
        if name not in infos:
            raise DatasetFileError(
                f"the data set has no array {name!r}; train and val splits are required "
                f"({', '.join(REQUIRED)})",
                name,
            )
    desc = DatasetDescription(
        arrays=[{"name": i.name, "dtype": i.dtype, "shape": list(i.shape)} for i in infos.values()]
    )
    splits = [s for s in SPLITS if f"x_{s}" in infos or f"y_{s}" in infos]
    for s in splits:
        for prefix in ("x", "y"):
            if f"{prefix}_{s}" not in infos:
                other = "y" if prefix == "x" else "x"
                raise DatasetFileError(
                    f"the data set has {other}_{s} but no array '{prefix}_{s}'", f"{prefix}_{s}"
                )
    _check_shapes(infos, splits, desc)
    _check_targets(infos, stats, splits, desc)
    return desc


def _check_shapes(infos: dict[str, ArrayInfo], splits: list[str], desc: DatasetDescription) -> None:
    x_train = infos["x_train"]
    if len(x_train.shape) < 2:
        raise DatasetFileError(
            f"array 'x_train' must be [n, features...], got shape {x_train.shape}", "x_train"
        )
    d = math.prod(x_train.shape[1:])
    for s in splits:
        x, y = infos[f"x_{s}"], infos[f"y_{s}"]
        n = x.shape[0] if x.shape else 0
        if len(x.shape) < 2 or math.prod(x.shape[1:]) != d:
            raise DatasetFileError(
                f"array 'x_{s}' has shape {x.shape}; x_train's rows have {d} features", f"x_{s}"
            )
        if n < 1:
            raise DatasetFileError(f"array 'x_{s}' has no rows", f"x_{s}")
        for name in (f"y_{s}", f"task_{s}"):
            other = infos.get(name)
            if other is not None and other.shape != (n,):
                raise DatasetFileError(
                    f"array {name!r} has shape {other.shape}; x_{s} has {n} rows, so it "
                    f"must be ({n},)",
                    name,
                )
        desc.rows[s] = n
        del y
    for s in SPLITS:
        if f"task_{s}" in infos and s not in desc.rows:
            raise DatasetFileError(f"array 'task_{s}' has no split {s!r} (x_{s})", f"task_{s}")
    groups = infos.get("groups")
    if groups is not None and groups.shape != (d,):
        raise DatasetFileError(
            f"array 'groups' has shape {groups.shape}; it needs one group per feature, ({d},)",
            "groups",
        )
    desc.n_features = d


def _check_targets(
    infos: dict[str, ArrayInfo],
    stats: dict[str, _Stats],
    splits: list[str],
    desc: DatasetDescription,
) -> None:
    classification = not infos["y_train"].dtype.startswith("float")
    for s in splits:
        name = f"y_{s}"
        if (not infos[name].dtype.startswith("float")) != classification:
            kind = "class labels" if classification else "regression targets"
            raise DatasetFileError(
                f"array {name!r} has dtype {infos[name].dtype} but y_train holds {kind} "
                f"({infos['y_train'].dtype}); use one kind in every split",
                name,
            )
    for name in [n for n in infos if n.startswith(("task_", "groups"))]:
        if infos[name].dtype.startswith("float") or stats[name].low < 0:
            raise DatasetFileError(
                f"array {name!r} must hold integers >= 0, got {infos[name].dtype} values from "
                f"{stats[name].low:g}",
                name,
            )
    if "task_train" in infos:
        desc.n_tasks = int(stats["task_train"].high) + 1
        for s in splits:
            st = stats.get(f"task_{s}")
            if st is not None and st.high >= desc.n_tasks:
                raise DatasetFileError(
                    f"array 'task_{s}' holds task ids up to {st.high:g}, out of range: "
                    f"task_train's tasks are 0..{desc.n_tasks - 1}",
                    f"task_{s}",
                )
    if not classification:
        return
    n_classes = int(stats["y_train"].high) + 1
    if stats["y_train"].low < 0 or n_classes > MAX_CLASSES:
        raise DatasetFileError(
            f"array 'y_train' holds labels in [{stats['y_train'].low:g}, "
            f"{stats['y_train'].high:g}]; labels are 0..C-1 with C <= {MAX_CLASSES}",
            "y_train",
        )
    for s in splits:
        st = stats[f"y_{s}"]
        if st.low < 0 or st.high >= n_classes:
            raise DatasetFileError(
                f"array 'y_{s}' holds labels in [{st.low:g}, {st.high:g}], out of range: "
                f"y_train's classes are 0..{n_classes - 1}",
                f"y_{s}",
            )
    if n_classes < 2:
        raise DatasetFileError("array 'y_train' holds a single class; at least 2 are needed",
                               "y_train")  # fmt: skip
    desc.task, desc.n_classes = "classification", n_classes
