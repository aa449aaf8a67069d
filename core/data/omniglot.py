"""Omniglot (Lake et al., 2015) from the two npz files, resized to 28x28, with a seeded split.

The data directory holds ``omniglot/images_background.npz`` (964 characters) and
``omniglot/images_evaluation.npz`` (659 characters), each with arrays ``images`` (bool
``[chars, 20, 105, 105]``, True on the white background) and ``labels``, and a
``<file>.sha256`` beside each (``sha256sum`` format). Both sets are pooled into the 1623
characters and split by character, as in Appendix G.3: a seeded random 1200 for
meta-training, 100 for meta-validation and the remaining 323 for meta-testing.

Images are inverted (ink = 1) and downsampled 105 -> 28 by area averaging
(``torch.nn.functional.interpolate(mode="area")``, i.e. adaptive average pooling), the usual
few-shot preprocessing (Vinyals et al., 2016; Finn et al., 2017), giving grey levels in
``[0, 1]``. No augmentation (no rotated classes), as in the paper.

Example:
    >>> data = load_omniglot("../shared/data")              # doctest: +SKIP
    >>> data.split("train").shape                           # doctest: +SKIP
    torch.Size([1200, 20, 28, 28])
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from core.errors import ConfigurationError

__all__ = ["OMNIGLOT_FILES", "OMNIGLOT_SPLITS", "Omniglot", "load_omniglot", "omniglot_split"]

OMNIGLOT_FILES = ("images_background.npz", "images_evaluation.npz")
# (meta-train, meta-val, meta-test) characters, Appendix G.3.
OMNIGLOT_SPLITS = {"train": 1200, "val": 100, "test": 323}
N_CHARACTERS = 1623
N_DRAWERS = 20


@dataclass(frozen=True)
class Omniglot:
    """The 1623 Omniglot characters, resized, with a character split.

    Attributes:
        images: float32 ``[1623, 20, size, size]`` in ``[0, 1]``, ink = 1; characters of the
            background set first, then those of the evaluation set.
        indices: ``{"train", "val", "test"}`` -> int64 character indices into ``images``
            (1200 / 100 / 323, disjoint, covering all characters).
        seed: the seed of the split.
    """

    images: Tensor
    indices: dict[str, Tensor]
    seed: int

    def split(self, name: str) -> Tensor:
        """The images ``[n_chars, 20, size, size]`` of one split.

        Raises:
            ConfigurationError: ``name`` is not ``"train"``, ``"val"`` or ``"test"``.
        """
        if name not in self.indices:
            raise ConfigurationError(f"split must be one of {tuple(self.indices)}, got {name!r}")
        return self.images[self.indices[name]]


def load_omniglot(
    data_dir: str | Path, *, size: int = 28, seed: int = 0, verify: bool = True
) -> Omniglot:
    """Load, check and resize Omniglot and split its characters 1200/100/323 (App. G.3).

    Args:
        data_dir: the data directory holding ``omniglot/`` (``../shared/data`` in CI); a
            directory that holds the npz files directly is accepted too.
        size: output side length; 28 as usual for few-shot work (105 keeps the originals).
        seed: seed of the character permutation that defines the split.
        verify: check each file's SHA-256 against its ``.sha256`` file.

    Returns:
        An :class:`Omniglot`.

    Raises:
        ConfigurationError: a file or checksum file is missing (one message listing every
            expected path), a checksum does not match, an array has the wrong shape, or
            ``size`` is not in ``[1, 105]``.
    """
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 105:
        raise ConfigurationError(f"size must be an integer in [1, 105], got {size!r}")
    folder = _find_folder(Path(data_dir))
    parts = []
    for name in OMNIGLOT_FILES:
        path = folder / name
        if verify:
            _verify(path)
        with np.load(path) as npz:
            images = npz["images"]
        if images.ndim != 4 or images.shape[1:] != (N_DRAWERS, 105, 105):
            raise ConfigurationError(
                f"{path}: expected images of shape [chars, 20, 105, 105], got {images.shape}"
            )
        parts.append(_resize(images, size))
    images = torch.cat(parts)
    if images.shape[0] != N_CHARACTERS:
        raise ConfigurationError(f"expected {N_CHARACTERS} characters, got {images.shape[0]}")
    return Omniglot(images=images, indices=omniglot_split(seed), seed=seed)


def omniglot_split(seed: int = 0) -> dict[str, Tensor]:
    """The seeded character split of App. G.3: 1200 / 100 / 323 of the 1623 characters.

    A random permutation from ``torch.Generator().manual_seed(seed)`` is cut in three; each
    part is returned sorted. Characters are indexed background set first.

    Returns:
        ``{"train", "val", "test"}`` -> int64 index tensors.
    """
    perm = torch.randperm(N_CHARACTERS, generator=torch.Generator().manual_seed(seed))
    n_train, n_val = OMNIGLOT_SPLITS["train"], OMNIGLOT_SPLITS["val"]
    return {
        "train": perm[:n_train].sort().values,
        "val": perm[n_train : n_train + n_val].sort().values,
        "test": perm[n_train + n_val :].sort().values,
    }


def _find_folder(data_dir: Path) -> Path:
    """``data_dir/omniglot`` (or ``data_dir`` itself) if it has every file, else one error."""
    candidates = [data_dir / "omniglot", data_dir]
    for folder in candidates:
        if all((folder / n).is_file() for n in OMNIGLOT_FILES):
            return folder
    folder = candidates[0]
    expected = [f for n in OMNIGLOT_FILES for f in (n, n + ".sha256")]
    missing = [f for f in expected if not (folder / f).is_file()]
    raise ConfigurationError(
        f"Omniglot not found: expected {', '.join(expected)} in {folder.resolve()} "
        f"(missing: {', '.join(missing)}); pass the data directory with --data-dir or "
        "set BILEVEL_DATA_DIR (see ../shared/data/README.md)"
    )


def _verify(path: Path) -> None:
    sums = path.with_name(path.name + ".sha256")
    if not sums.is_file():
        raise ConfigurationError(f"checksum file {sums} is missing (expected beside {path.name})")
    fields = sums.read_text().split()
    if not fields:
        raise ConfigurationError(f"checksum file {sums} is empty")
    expected = fields[0].lower()
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != expected:
        raise ConfigurationError(
            f"checksum mismatch for {path}: sha256 is {digest.hexdigest()}, "
            f"{sums.name} says {expected}"
        )


def _resize(images: np.ndarray, size: int, chunk: int = 128) -> Tensor:
    """Invert (ink = 1) and area-downsample bool ``[c, 20, 105, 105]`` to float32."""
    c = images.shape[0]
    out = torch.empty(c, N_DRAWERS, size, size)
    # chunks keep the float copy small: the bool array alone is ~360 MB for all 1623 chars
    for i in range(0, c, chunk):
        x = torch.from_numpy(~images[i : i + chunk]).float().flatten(0, 1).unsqueeze(1)
        y = torch.nn.functional.interpolate(x, size=(size, size), mode="area")
        out[i : i + chunk] = y.reshape(-1, N_DRAWERS, size, size)
    return out
