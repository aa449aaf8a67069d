"""Loaders for real data sets; nothing is downloaded, the data directory is an argument.

* :func:`load_digits`: scikit-learn's bundled 8x8 digits.
* :func:`load_mnist`, :func:`load_fashion_mnist`: IDX files, gzipped or not, MD5-verified.
* :func:`class_balanced_split`, :func:`corrupt_labels`: seeded splits and label noise.
"""

from core.data._common import LabeledData
from core.data.digits import load_digits
from core.data.idx import (
    FASHION_MNIST_DEBIAN_DIR,
    FASHION_MNIST_MD5,
    MNIST_MD5,
    load_fashion_mnist,
    load_mnist,
    read_idx,
)
from core.data.splits import class_balanced_split, corrupt_labels

__all__ = [
    "FASHION_MNIST_DEBIAN_DIR",
    "FASHION_MNIST_MD5",
    "MNIST_MD5",
    "LabeledData",
    "class_balanced_split",
    "corrupt_labels",
    "load_digits",
    "load_fashion_mnist",
    "load_mnist",
    "read_idx",
]
