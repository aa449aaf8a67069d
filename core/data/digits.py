"""scikit-learn's bundled handwritten digits: 1797 8x8 images, 10 classes, no download."""

from __future__ import annotations

import torch

from core.data._common import LabeledData
from core.errors import ConfigurationError

__all__ = ["load_digits"]


def load_digits(*, flatten: bool = True, dtype: torch.dtype = torch.float32) -> LabeledData:
    """The UCI optical digits as shipped with scikit-learn (``sklearn.datasets.load_digits``).

    Pixels are counts in ``0..16``; they are divided by 16 so that they lie in ``[0, 1]``
    like the MNIST loaders' output.

    Args:
        flatten: images as ``[1797, 64]`` rather than ``[1797, 8, 8]``.
        dtype: of the images.

    Returns:
        A :class:`LabeledData` with int64 labels.

    Raises:
        ConfigurationError: scikit-learn is not installed.
    """
    try:
        from sklearn.datasets import load_digits as _sk_load_digits
    except ImportError:  # pragma: no cover - scikit-learn is a dependency
        raise ConfigurationError(
            "the digits data set needs scikit-learn (pip install scikit-learn)"
        ) from None
    bunch = _sk_load_digits()
    x = torch.as_tensor(bunch.images, dtype=dtype) / 16.0
    if flatten:
        x = x.reshape(x.shape[0], -1)
    return LabeledData(images=x, labels=torch.as_tensor(bunch.target, dtype=torch.int64))
