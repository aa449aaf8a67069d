"""Data set files for tests: scikit-learn's bundled sets as .npz or .safetensors uploads."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np

_SAFETENSORS_DTYPES = {
    "float64": "F64", "float32": "F32", "float16": "F16", "int64": "I64", "int32": "I32",
    "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL",
}  # fmt: skip


def digits_arrays(n_train: int = 1000, n_val: int = 400, seed: int = 0) -> dict[str, np.ndarray]:
    """scikit-learn's digits as train/val/test splits (pixels in [0, 1], int64 labels)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    order = np.random.default_rng(seed).permutation(len(bunch.target))
    x, y = bunch.data[order] / 16.0, bunch.target[order].astype(np.int64)
    a, b = n_train, n_train + n_val
    return {
        "x_train": x[:a], "y_train": y[:a], "x_val": x[a:b], "y_val": y[a:b],
        "x_test": x[b:], "y_test": y[b:],
    }  # fmt: skip


def npz_bytes(arrays: dict[str, Any]) -> bytes:
    """``numpy.savez`` into bytes (an object array is pickled into the file)."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def safetensors_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """The .safetensors format by its specification (no safetensors package needed)."""
    header, offset, blobs = {}, 0, []
    for name, a in arrays.items():
        data = np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {
            "dtype": _SAFETENSORS_DTYPES[a.dtype.name],
            "shape": list(a.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        offset += len(data)
        blobs.append(data)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + b"".join(blobs)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
