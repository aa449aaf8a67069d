"""Data loaders on the real files in ../shared/data, and seeded splits."""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import pytest
import torch

import core
from core.data import (
    FASHION_MNIST_DEBIAN_DIR,
    class_balanced_split,
    corrupt_labels,
    load_digits,
    load_fashion_mnist,
    load_mnist,
    read_idx,
)

DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data"
# Class counts of the canonical MNIST release (LeCun et al.).
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


@pytest.fixture(scope="module")
def data_dir() -> Path:
    """The shared data directory; its absence fails in CI and skips elsewhere."""
    if not (DATA_DIR / "mnist").is_dir():
        reason = f"data directory {DATA_DIR} with mnist/ not found"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must provide ../shared/data")
        pytest.skip(reason)
    return DATA_DIR


# -- MNIST and IDX ------------------------------------------------------------------------


def test_mnist_test_split_has_canonical_shape_range_and_class_counts(data_dir):
    data = load_mnist(data_dir, "test")
    assert data.images.shape == (10000, 784) and data.images.dtype == torch.float32
    assert float(data.images.min()) == 0.0 and float(data.images.max()) == 1.0
    assert data.labels.dtype == torch.int64
    assert torch.bincount(data.labels).tolist() == MNIST_TEST_COUNTS


def test_mnist_all_pools_train_then_test_and_keeps_image_shape(data_dir):
    data = load_mnist(data_dir, "all", flatten=False, dtype=torch.float64)
    assert data.images.shape == (70000, 28, 28) and data.images.dtype == torch.float64
    counts = torch.bincount(data.labels[:60000]).tolist()
    assert counts == MNIST_TRAIN_COUNTS
    assert torch.bincount(data.labels[60000:]).tolist() == MNIST_TEST_COUNTS


def _copy_test_files(data_dir: Path, dest: Path, *, gunzip: bool) -> None:
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        src = data_dir / "mnist" / f"{name}.gz"
        if gunzip:
            (dest / name).write_bytes(gzip.decompress(src.read_bytes()))
        else:
            shutil.copy(src, dest / f"{name}.gz")


def test_uncompressed_idx_files_load_identically_and_pass_the_same_checksum(data_dir, tmp_path):
    _copy_test_files(data_dir, tmp_path, gunzip=True)
    plain = load_mnist(tmp_path, "test")
    gz = load_mnist(data_dir, "test")
    assert torch.equal(plain.images, gz.images) and torch.equal(plain.labels, gz.labels)


def test_corrupted_file_fails_its_checksum_with_a_clear_error(data_dir, tmp_path):
    _copy_test_files(data_dir, tmp_path, gunzip=True)
    path = tmp_path / "t10k-labels-idx1-ubyte"
    raw = bytearray(path.read_bytes())
    raw[100] = (raw[100] + 1) % 10  # still a valid IDX file, one label changed
    path.write_bytes(bytes(raw))
    with pytest.raises(core.ConfigurationError, match="checksum mismatch") as info:
        load_mnist(tmp_path, "test")
    message = str(info.value)
    assert str(path) in message and "27ae3e4e09519cfbb04c329615203637" in message
    assert len(load_mnist(tmp_path, "test", verify=False).labels) == 10000


def test_missing_files_raise_one_message_listing_every_file_and_folder(tmp_path):
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"")  # only some files present
    with pytest.raises(core.ConfigurationError) as info:
        load_mnist(tmp_path, "all")
    message = str(info.value)
    assert "\n" not in message
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"):
        assert name in message
    assert str(tmp_path / "mnist") in message and str(tmp_path) in message
    assert "shared/data" in message


def test_unknown_split_is_rejected_with_its_value(tmp_path):
    with pytest.raises(core.ConfigurationError, match="'validation'"):
        load_mnist(tmp_path, "validation")


def _idx(shape, values: bytes) -> bytes:
    header = bytes([0, 0, 8, len(shape)]) + b"".join(s.to_bytes(4, "big") for s in shape)
    return header + values


def test_read_idx_parses_header_and_data_gzipped_or_not(tmp_path):
    raw = _idx([2, 3], bytes(range(6)))
    (tmp_path / "a").write_bytes(raw)
    (tmp_path / "b.gz").write_bytes(gzip.compress(raw))
    expected = torch.arange(6, dtype=torch.uint8).reshape(2, 3)
    assert torch.equal(read_idx(tmp_path / "a"), expected)
    assert torch.equal(read_idx(tmp_path / "b.gz"), expected)


@pytest.mark.parametrize(
    "raw, match",
    [
        (bytes([0, 0, 0x0D, 1]) + (2).to_bytes(4, "big") + bytes(8), "unsigned-byte IDX"),
        (_idx([2, 3], bytes(5)), "header says shape"),
    ],
)
def test_read_idx_rejects_malformed_files(tmp_path, raw, match):
    (tmp_path / "x").write_bytes(raw)
    with pytest.raises(core.ConfigurationError, match=match):
        read_idx(tmp_path / "x")


@pytest.mark.skipif(
    not FASHION_MNIST_DEBIAN_DIR.is_dir(),
    reason=f"Fashion-MNIST not installed at {FASHION_MNIST_DEBIAN_DIR} "
    "(apt-get install dataset-fashion-mnist)",
)
def test_fashion_mnist_from_the_debian_package_passes_its_checksums():
    data = load_fashion_mnist(split="test")
    assert data.images.shape == (10000, 784)
    assert torch.bincount(data.labels).tolist() == [1000] * 10


# -- digits ---------------------------------------------------------------------------------


def test_digits_are_scaled_to_unit_interval():
    data = load_digits()
    assert data.images.shape == (1797, 64) and data.labels.dtype == torch.int64
    assert float(data.images.min()) == 0.0 and float(data.images.max()) == 1.0
    assert load_digits(flatten=False).images.shape == (1797, 8, 8)
    assert sorted(data.labels.unique().tolist()) == list(range(10))


# -- splits ---------------------------------------------------------------------------------


def test_class_balanced_split_is_balanced_disjoint_complete_and_seeded():
    labels = torch.arange(1000) % 10
    train, val, rest = class_balanced_split(labels, [100, 55], seed=3)
    assert torch.bincount(labels[train], minlength=10).tolist() == [10] * 10
    counts = torch.bincount(labels[val], minlength=10)
    assert counts.sum() == 55 and set(counts.tolist()) == {5, 6}
    everything = torch.cat([train, val, rest])
    assert torch.equal(everything.sort().values, torch.arange(1000))
    again = class_balanced_split(labels, [100, 55], seed=3)
    assert all(torch.equal(a, b) for a, b in zip(again, (train, val, rest)))
    assert not torch.equal(class_balanced_split(labels, [100, 55], seed=4)[0], train)


def test_class_balanced_split_refuses_sizes_a_class_cannot_fill():
    labels = torch.tensor([0] * 5 + [1] * 50)
    with pytest.raises(core.ConfigurationError, match="class 0 has 5 examples"):
        class_balanced_split(labels, [20], seed=0)


def test_corrupt_labels_replaces_half_and_flags_exactly_the_changed_ones():
    labels = torch.arange(10000) % 10
    noisy, corrupted = corrupt_labels(labels, 10, fraction=0.5, seed=0)
    assert torch.equal(corrupted, noisy != labels)
    changed = int(corrupted.sum())
    assert 0.43 * 10000 < changed <= 5000  # half replaced, ~1/10 of them drew their own label
    assert int((noisy != labels).sum()) == changed
    noisy2, _ = corrupt_labels(labels, 10, fraction=0.5, seed=0)
    assert torch.equal(noisy, noisy2)
    with pytest.raises(core.ConfigurationError, match=r"got 1\.5"):
        corrupt_labels(labels, 10, fraction=1.5)
