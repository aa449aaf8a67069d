"""What the loaders share: the labelled-data container and the missing-file error."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from torch import Tensor

from core.errors import ConfigurationError

__all__ = ["LabeledData", "missing_files_error"]


class LabeledData(NamedTuple):
    """Images and their labels.

    Attributes:
        images: float tensor, ``[N, H*W]`` (flattened) or ``[N, H, W]``, pixels in ``[0, 1]``.
        labels: int64 tensor ``[N]`` of class indices.
    """

    images: Tensor
    labels: Tensor


def missing_files_error(
    dataset: str, missing: Sequence[str], searched: Sequence[Path], hint: str
) -> ConfigurationError:
    """One message that names every missing file and every folder that was searched."""
    where = " or ".join(str(p) for p in searched)
    return ConfigurationError(
        f"{dataset} data not found: expected {', '.join(missing)} (each may be gzipped, "
        f"'.gz') in {where}; {hint}"
    )
