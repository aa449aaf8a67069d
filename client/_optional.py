"""The optional packages of the notebook side: numpy, pandas, tqdm.

They come with ``pip install 'bilevel[client]'``; the client's HTTP side needs none of them.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["need"]


def need(module: str, what: str) -> Any:
    """``module`` imported, or an ImportError saying which extra brings it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(
            f"{what} needs {module.split('.')[0]}: pip install 'bilevel[client]'"
        ) from None
