"""Turn a CSV file or a scikit-learn data set into a file for ``bilevel datasets upload``.

    python examples/make_dataset.py --sklearn digits --out digits.npz
    python examples/make_dataset.py --csv houses.csv --target price --out houses.npz
    python examples/make_dataset.py --csv iris.csv --target species --out iris.safetensors
    python examples/make_dataset.py --csv shops.csv --target sales --task-column shop --out s.npz

The rows are shuffled with ``--seed`` and split into train / val / test (``--val`` and
``--test`` are fractions). A CSV's target column becomes class labels ``0..C-1`` when it
holds text or ``--task classification`` is given (the classes are printed in label order),
float regression targets otherwise; ``--task-column`` becomes the task ids ``task_<split>``
(for ``task_interaction``); every other column must be numeric. The output format
follows the suffix: ``.npz`` (numpy.savez) or ``.safetensors`` (written by hand: no extra
package). Needs numpy (and scikit-learn for ``--sklearn``).
"""

from __future__ import annotations

import argparse
import csv
import json
import struct
import sys
from pathlib import Path

import numpy as np

SKLEARN = ("digits", "diabetes", "breast_cancer", "iris", "wine", "california_housing")
_ST = {"float64": "F64", "float32": "F32", "int64": "I64", "int32": "I32"}


def from_sklearn(name: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{name}", None) or getattr(datasets, f"fetch_{name}")
    data = bunch()
    y = np.asarray(data.target)
    y = y.astype(np.float64) if y.dtype.kind == "f" else y.astype(np.int64)
    return np.asarray(data.data, dtype=np.float64), y


def from_csv(
    path: Path, target: str, task: str | None, task_column: str | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise SystemExit(f"{path}: no rows")
    for col in (target, task_column):
        if col is not None and col not in rows[0]:
            raise SystemExit(f"{path}: no column {col!r}; columns: {', '.join(rows[0])}")
    tasks = None
    if task_column is not None:
        names = sorted({r[task_column] for r in rows})
        print("tasks:", ", ".join(f"{i}={t}" for i, t in enumerate(names)), file=sys.stderr)
        tasks = np.array([names.index(r[task_column]) for r in rows], dtype=np.int64)
    features = [c for c in rows[0] if c not in (target, task_column)]
    x = np.empty((len(rows), len(features)))
    for j, col in enumerate(features):
        try:
            x[:, j] = [float(r[col]) for r in rows]
        except ValueError:
            raise SystemExit(f"{path}: column {col!r} is not numeric; encode it first") from None
    raw = [r[target] for r in rows]
    try:
        values = np.array([float(v) for v in raw])
        text = False
    except ValueError:
        text = True
    if text or task == "classification":
        classes = sorted(set(raw))
        print("classes:", ", ".join(f"{i}={c}" for i, c in enumerate(classes)), file=sys.stderr)
        return x, np.array([classes.index(v) for v in raw], dtype=np.int64), tasks
    return x, values, tasks


def split(
    x: np.ndarray, y: np.ndarray, val: float, test: float, seed: int, tasks: np.ndarray | None
) -> dict:
    order = np.random.default_rng(seed).permutation(len(y))
    n_val, n_test = round(val * len(y)), round(test * len(y))
    n_train = len(y) - n_val - n_test
    parts = {"train": order[:n_train], "val": order[n_train : n_train + n_val]}
    if n_test:
        parts["test"] = order[n_train + n_val :]
    out = {}
    for name, idx in parts.items():
        out[f"x_{name}"], out[f"y_{name}"] = x[idx], y[idx]
        if tasks is not None:
            out[f"task_{name}"] = tasks[idx]
    if y.dtype.kind == "i":  # labels of val/test must be classes seen in training
        seen = set(out["y_train"].tolist())
        for name in parts:
            if not set(out[f"y_{name}"].tolist()) <= seen:
                raise SystemExit(f"y_{name} has a class no training row has; use another --seed")
    return out


def write_safetensors(path: Path, arrays: dict) -> None:
    header, offset, blobs = {}, 0, []
    for name, a in arrays.items():
        data = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": _ST[a.dtype.name], "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(data)]}  # fmt: skip
        offset += len(data)
        blobs.append(data)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--sklearn", choices=SKLEARN)
    src.add_argument("--csv", type=Path)
    ap.add_argument("--target", help="the CSV's target column")
    ap.add_argument("--task", choices=["classification", "regression"])
    ap.add_argument("--task-column", help="the CSV's task id column (task_interaction)")
    ap.add_argument("--val", type=float, default=0.2)
    ap.add_argument("--test", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    if args.csv and not args.target:
        ap.error("--csv needs --target")
    if args.sklearn:
        (x, y), tasks = from_sklearn(args.sklearn), None
    else:
        x, y, tasks = from_csv(args.csv, args.target, args.task, args.task_column)
    arrays = split(x, y, args.val, args.test, args.seed, tasks)
    if args.out.suffix == ".safetensors":
        write_safetensors(args.out, arrays)
    else:
        np.savez(args.out, **arrays)
    rows = ", ".join(f"{k[2:]} {len(v)}" for k, v in arrays.items() if k.startswith("y_"))
    print(f"wrote {args.out}: {x.shape[1]} features, rows {rows}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
