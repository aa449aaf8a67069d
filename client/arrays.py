"""Named arrays to and from ``.npz`` bytes: data sets to upload, learned hyperparameters.

A data set file holds ``x_train``, ``y_train``, ``x_val``, ``y_val`` (``x_test``,
``y_test`` and ``task_<split>`` optional); :func:`split_frame` makes them of a table.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

from client._optional import need

__all__ = ["npz_bytes", "read_npz", "split_frame"]


def npz_bytes(arrays: Mapping[str, Any]) -> bytes:
    """The arrays as one ``.npz`` file (``numpy.savez``), in memory."""
    np = need("numpy", "uploading arrays")
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def read_npz(data: bytes) -> dict[str, Any]:
    """The arrays of an ``.npz`` file by name (never unpickling an object array)."""
    np = need("numpy", "reading hyperparameters")
    with np.load(io.BytesIO(data), allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def split_frame(
    frame: Any,
    target: str,
    *,
    val: float = 0.2,
    test: float = 0.0,
    seed: int = 0,
    features: Sequence[str] | None = None,
) -> dict[str, Any]:
    """A table's rows shuffled and split into the arrays of a data set file.

    Args:
        frame: a ``pandas.DataFrame`` of numeric columns.
        target: the column to predict; integer values make a classification set, floats a
            regression one.
        val: the fraction of rows for the validation split (the outer problem's data).
        test: the fraction of rows held out for the final test metrics.
        seed: the shuffle's seed.
        features: the feature columns, in order; by default every column but ``target``.

    Returns:
        ``x_<split>`` (float64) and ``y_<split>`` arrays for ``train``, ``val`` and, when
        ``test > 0``, ``test``.

    Raises:
        ValueError: ``target`` is not a column, or a split would be empty.
    """
    np = need("numpy", "split_frame")
    if target not in frame.columns:
        raise ValueError(f"target {target!r} is not a column; columns: {list(frame.columns)}")
    cols = list(features) if features is not None else [c for c in frame.columns if c != target]
    x = frame[cols].to_numpy(dtype=np.float64)
    y = frame[target].to_numpy()
    y = y.astype(np.int64) if y.dtype.kind in "iub" else y.astype(np.float64)
    n = len(y)
    n_val, n_test = round(val * n), round(test * n)
    if n_val < 1 or n - n_val - n_test < 1 or (test > 0 and n_test < 1):
        raise ValueError(f"{n} rows cannot be split with val={val}, test={test}")
    order = np.random.default_rng(seed).permutation(n)
    n_train = n - n_val - n_test
    parts = {"train": order[:n_train], "val": order[n_train : n_train + n_val]}
    if n_test:
        parts["test"] = order[n_train + n_val :]
    out: dict[str, Any] = {}
    for name, idx in parts.items():
        out[f"x_{name}"], out[f"y_{name}"] = x[idx], y[idx]
    return out
