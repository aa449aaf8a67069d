"""Upload validation, without numpy on the reading side: each refusal names its array."""

from __future__ import annotations

import numpy as np
import pytest

from jobs.datasets.checks import describe_file
from jobs.datasets.files import DatasetFileError
from tests.dataset_files import digits_arrays, npz_bytes, safetensors_bytes, write


def _small():
    return digits_arrays(n_train=60, n_val=30)


@pytest.mark.parametrize("fmt", ["npz", "safetensors"])
def test_a_valid_file_is_described_the_same_in_either_format(tmp_path, fmt):
    arrays = _small()
    data = npz_bytes(arrays) if fmt == "npz" else safetensors_bytes(arrays)
    desc = describe_file(write(tmp_path / f"d.{fmt}", data))
    assert desc.task == "classification"
    assert desc.n_classes == int(arrays["y_train"].max()) + 1
    assert desc.n_features == 64
    assert desc.rows == {"train": 60, "val": 30, "test": len(arrays["y_test"])}
    assert {a["name"]: (a["dtype"], a["shape"]) for a in desc.arrays} == {
        k: (v.dtype.name, list(v.shape)) for k, v in arrays.items()
    }


def test_float_targets_make_a_regression_set(tmp_path):
    arrays = _small()
    for s in ("train", "val", "test"):
        arrays[f"y_{s}"] = arrays[f"y_{s}"].astype(np.float32) * 0.5
    desc = describe_file(write(tmp_path / "r.npz", npz_bytes(arrays)))
    assert (desc.task, desc.n_classes) == ("regression", 0)


def _broken(name):
    a = _small()
    if name == "pickled":
        a["x_val"] = np.array([{"a": 1}] * 30, dtype=object)
    elif name == "nan":
        a["x_val"] = a["x_val"].copy()
        a["x_val"][3, 5] = np.nan
    elif name == "inf_target":
        a["y_train"] = a["y_train"].astype(np.float64)
        a["y_val"] = a["y_val"].astype(np.float64)
        a["y_val"][0] = np.inf
    elif name == "mismatched_rows":
        a["y_val"] = a["y_val"][:-1]
    elif name == "missing_split":
        del a["x_val"], a["y_val"]
    elif name == "label_out_of_range":
        a["y_test"] = a["y_test"].copy()
        a["y_test"][0] = 99
    elif name == "negative_label":
        a["y_train"] = a["y_train"].copy()
        a["y_train"][0] = -1
    elif name == "mixed_target_kinds":
        a["y_val"] = a["y_val"].astype(np.float64)
    elif name == "feature_count":
        a["x_test"] = a["x_test"][:, :10]
    elif name == "unknown_name":
        a["x_valid"] = a["x_val"]
    elif name == "half_split":
        del a["y_test"]
    elif name == "task_out_of_range":
        a["task_train"] = np.arange(60) % 3
        a["task_val"] = np.full(30, 3)
    return a


CASES = {
    "pickled": ("x_val", "object array"),
    "nan": ("x_val", "NaN"),
    "inf_target": ("y_val", "NaN or infinite"),
    "mismatched_rows": ("y_val", r"must be \(30,\)"),
    "missing_split": ("x_val", "train and val splits are required"),
    "label_out_of_range": ("y_test", "out of range"),
    "negative_label": ("y_train", "labels are 0..C-1"),
    "mixed_target_kinds": ("y_val", "one kind in every split"),
    "feature_count": ("x_test", "64 features"),
    "unknown_name": ("x_valid", "unknown array"),
    "half_split": ("y_test", "no array 'y_test'"),
    "task_out_of_range": ("task_val", "task ids up to 3, out of range"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_broken_file_is_refused_naming_the_array(tmp_path, case):
    array, words = CASES[case]
    path = write(tmp_path / "bad.npz", npz_bytes(_broken(case)))
    with pytest.raises(DatasetFileError, match=words) as info:
        describe_file(path)
    assert info.value.array == array


@pytest.mark.parametrize("fmt", ["npz", "safetensors"])
def test_a_truncated_file_is_refused(tmp_path, fmt):
    arrays = _small()
    data = npz_bytes(arrays) if fmt == "npz" else safetensors_bytes(arrays)
    path = write(tmp_path / f"t.{fmt}", data[: len(data) - 300])
    with pytest.raises(DatasetFileError, match="truncated"):
        describe_file(path)


def test_neither_format_is_refused(tmp_path):
    with pytest.raises(DatasetFileError, match=r"neither an \.npz nor"):
        describe_file(write(tmp_path / "x.csv", b"a,b,c\n1,2,3\n" * 10))


def test_a_pickled_array_is_refused_without_unpickling(tmp_path, monkeypatch):
    import pickle

    def boom(*args, **kwargs):
        raise AssertionError("something was unpickled")

    monkeypatch.setattr(pickle, "loads", boom)
    monkeypatch.setattr(pickle, "load", boom)
    path = write(tmp_path / "p.npz", npz_bytes(_broken("pickled")))
    with pytest.raises(DatasetFileError, match="pickled"):
        describe_file(path)


def test_the_example_script_makes_files_the_upload_accepts(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "examples" / "make_dataset.py"
    out = tmp_path / "diabetes.npz"
    subprocess.run([sys.executable, str(script), "--sklearn", "diabetes", "--out", str(out)],
                   check=True, capture_output=True)  # fmt: skip
    desc = describe_file(out)
    assert (desc.task, desc.n_features, sum(desc.rows.values())) == ("regression", 10, 442)

    csv = tmp_path / "t.csv"
    csv.write_text("a,b,kind\n" + "".join(f"{i},{i % 3},{'xy'[i % 2]}\n" for i in range(20)))
    out = tmp_path / "t.safetensors"
    subprocess.run([sys.executable, str(script), "--csv", str(csv), "--target", "kind",
                    "--out", str(out)], check=True, capture_output=True)  # fmt: skip
    desc = describe_file(out)
    assert (desc.task, desc.n_classes, desc.n_features) == ("classification", 2, 2)
