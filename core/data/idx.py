"""MNIST and Fashion-MNIST from their IDX files, gzipped or not, checksums verified.

The IDX format (LeCun et al.): a big-endian header ``0x00 0x00 <type> <ndim>``, then
``ndim`` big-endian uint32 sizes, then the data. Only unsigned bytes (type ``0x08``) occur
in these data sets. Checksums are MD5 of the *uncompressed* bytes, so a file verifies the
same whether or not it is gzipped (and whichever gzip level produced it).
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import torch
from torch import Tensor

from core.data._common import LabeledData, missing_files_error
from core.errors import ConfigurationError

__all__ = [
    "FASHION_MNIST_DEBIAN_DIR",
    "FASHION_MNIST_MD5",
    "MNIST_MD5",
    "load_fashion_mnist",
    "load_mnist",
    "read_idx",
]

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

# The canonical MD5s of the uncompressed MNIST files (LeCun's originals; also in
# shared/data/README.md).
MNIST_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}

# Zalando publishes MD5s of its *.gz* files only; Debian's package recompresses them (its
# .gz MD5s differ), so we pin the MD5s of the uncompressed bytes, computed from Debian's
# dataset-fashion-mnist 0.0~git20200523.55506a9-1 (verified against that package's own
# md5sums list for the .gz files it ships).
FASHION_MNIST_MD5 = {
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}

# Where `apt-get install dataset-fashion-mnist` puts the files.
FASHION_MNIST_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")

_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | Path, md5: str | None = None) -> Tensor:
    """Read one IDX file of unsigned bytes into a ``uint8`` tensor of its shape.

    Args:
        path: the file, gzipped or not (told apart by gzip's magic bytes, not the name).
        md5: the expected MD5 of the uncompressed bytes; ``None`` skips the check.

    Returns:
        A ``uint8`` tensor, e.g. ``[60000, 28, 28]`` for images, ``[60000]`` for labels.

    Raises:
        ConfigurationError: the checksum differs, or the file is not a valid ubyte IDX file.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ConfigurationError(f"{path} is not a valid gzip file: {exc}") from None
    if md5 is not None:
        got = hashlib.md5(raw).hexdigest()
        if got != md5:
            raise ConfigurationError(
                f"checksum mismatch for {path}: MD5 of the uncompressed bytes is {got}, "
                f"expected {md5} (the file is corrupt or not the canonical release)"
            )
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ConfigurationError(
            f"{path} is not an unsigned-byte IDX file (header {raw[:4].hex()!r})"
        )
    ndim = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    count = 1
    for s in shape:
        count *= s
    if len(raw) - offset != count:
        raise ConfigurationError(
            f"{path}: header says shape {shape} ({count} bytes) but holds {len(raw) - offset}"
        )
    data = torch.frombuffer(bytearray(raw[offset:]), dtype=torch.uint8)
    return data.reshape(shape)


def load_mnist(
    data_dir: str | Path,
    split: str = "train",
    *,
    flatten: bool = True,
    dtype: torch.dtype = torch.float32,
    verify: bool = True,
) -> LabeledData:
    """MNIST (LeCun, Cortes, Burges): 60,000 training and 10,000 test digits, 28x28.

    Args:
        data_dir: a folder holding the four IDX files, or one with a ``mnist/`` subfolder
            that does (e.g. ``shared/data``).
        split: ``"train"`` (60,000), ``"test"`` (10,000) or ``"all"`` (both, train first).
        flatten: return images as ``[N, 784]`` rather than ``[N, 28, 28]``.
        dtype: of the images, pixels scaled to ``[0, 1]``.
        verify: check each file against :data:`MNIST_MD5`.

    Returns:
        A :class:`LabeledData` with int64 labels.

    Raises:
        ConfigurationError: a file is missing (one message listing all of them and where
            they were looked for), corrupt, or ``split`` is unknown.
    """
    return _load(
        "MNIST",
        Path(data_dir),
        "mnist",
        MNIST_MD5 if verify else None,
        split,
        flatten,
        dtype,
        "MNIST is in shared/data/mnist (see shared/data/README.md); pass its folder",
    )


def load_fashion_mnist(
    data_dir: str | Path = FASHION_MNIST_DEBIAN_DIR,
    split: str = "train",
    *,
    flatten: bool = True,
    dtype: torch.dtype = torch.float32,
    verify: bool = True,
) -> LabeledData:
    """Fashion-MNIST (Xiao et al., 2017): 60,000 + 10,000 28x28 clothing images, 10 classes.

    Args:
        data_dir: a folder holding the four IDX files, or one with a ``fashion-mnist/``
            subfolder; by default where Debian's ``dataset-fashion-mnist`` installs them.
        split: ``"train"``, ``"test"`` or ``"all"``, as for :func:`load_mnist`.
        flatten: return images as ``[N, 784]`` rather than ``[N, 28, 28]``.
        dtype: of the images, pixels scaled to ``[0, 1]``.
        verify: check each file against :data:`FASHION_MNIST_MD5`.

    Raises:
        ConfigurationError: as for :func:`load_mnist`.
    """
    return _load(
        "Fashion-MNIST",
        Path(data_dir),
        "fashion-mnist",
        FASHION_MNIST_MD5 if verify else None,
        split,
        flatten,
        dtype,
        "install it with `apt-get install dataset-fashion-mnist` (files under "
        f"{FASHION_MNIST_DEBIAN_DIR}) or pass the folder that holds them",
    )


def _load(
    name: str,
    data_dir: Path,
    subdir: str,
    md5s: dict[str, str] | None,
    split: str,
    flatten: bool,
    dtype: torch.dtype,
    hint: str,
) -> LabeledData:
    """Find, verify and read one IDX data set's ``split`` (see :func:`load_mnist`)."""
    if split not in (*_FILES, "all"):
        raise ConfigurationError(f"split must be 'train', 'test' or 'all', got {split!r}")
    parts = list(_FILES) if split == "all" else [split]
    wanted = [f for p in parts for f in _FILES[p]]
    folders = [data_dir / subdir, data_dir]
    paths: dict[str, Path] = {}
    for folder in folders:
        found = {f: _find(folder, f) for f in wanted}
        if all(found.values()):
            paths = {f: path for f, path in found.items() if path is not None}
            break
    if not paths:
        raise missing_files_error(name, wanted, folders, hint)
    images, labels = [], []
    for p in parts:
        img_name, lab_name = _FILES[p]
        img = read_idx(paths[img_name], md5s[img_name] if md5s else None)
        lab = read_idx(paths[lab_name], md5s[lab_name] if md5s else None)
        if img.shape[0] != lab.shape[0]:
            raise ConfigurationError(f"{name} {p}: {img.shape[0]} images but {lab.shape[0]} labels")
        images.append(img)
        labels.append(lab)
    x = torch.cat(images).to(dtype) / 255.0
    if flatten:
        x = x.reshape(x.shape[0], -1)
    return LabeledData(images=x, labels=torch.cat(labels).long())


def _find(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None
