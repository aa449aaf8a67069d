"""The real data sets in ``../shared/data``: found, or the test skips (fails in CI)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.data.omniglot import OMNIGLOT_FILES

DATA = Path(__file__).parents[1].parent / "shared" / "data"


def require_omniglot() -> Path:
    """The data directory holding ``omniglot/``; skip the test without it (fail in CI)."""
    folder = DATA / "omniglot"
    if all((folder / n).is_file() for n in OMNIGLOT_FILES):
        return DATA
    reason = f"Omniglot npz files not found in {folder}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must provide ../shared/data")
    pytest.skip(reason)
