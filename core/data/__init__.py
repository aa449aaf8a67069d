"""Loaders for real data sets; nothing is downloaded, the data directory is an argument.

* :func:`load_digits`: scikit-learn's bundled 8x8 digits.
* :func:`load_mnist`, :func:`load_fashion_mnist`: IDX files, gzipped or not, MD5-verified.
* :func:`load_omniglot`, :func:`omniglot_split`: Omniglot's two npz files, SHA-256-verified,
  resized to 28x28, and the seeded 1200/100/323 character split.
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
from core.data.omniglot import (
    OMNIGLOT_FILES,
    OMNIGLOT_SPLITS,
    Omniglot,
    load_omniglot,
    omniglot_split,
)
from core.data.splits import class_balanced_split, corrupt_labels

__all__ = [
    "FASHION_MNIST_DEBIAN_DIR",
    "FASHION_MNIST_MD5",
    "MNIST_MD5",
    "OMNIGLOT_FILES",
    "OMNIGLOT_SPLITS",
    "LabeledData",
    "Omniglot",
    "class_balanced_split",
    "corrupt_labels",
    "load_digits",
    "load_fashion_mnist",
    "load_mnist",
    "load_omniglot",
    "omniglot_split",
    "read_idx",
]
