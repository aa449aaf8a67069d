"""The worker's data directory (``BILEVEL_DATA_DIR``): where the real data sets are read.

:class:`DataMissing` is a :class:`core.ConfigurationError`, so a job whose data set is not
there fails at once, without a retry (another attempt on this worker would fail alike).
"""

from __future__ import annotations

from pathlib import Path

import core

__all__ = ["DataMissing", "require_data"]


class DataMissing(core.ConfigurationError):
    """A problem's data set is not where the worker's ``data_dir`` setting says.

    A configuration error (so the job fails without a retry and without a traceback),
    naming the setting, the path and what was expected there.
    """


def require_data(data_dir: str | Path | None, kind: str, folder: str) -> Path:
    """``data_dir``, after checking that it holds ``folder`` (e.g. ``omniglot``).

    Raises:
        DataMissing: ``data_dir`` is unset, or has no ``folder`` in it.
    """
    if data_dir is None:
        raise DataMissing(
            f"{kind} reads {folder}/ from the worker's data directory, and the worker setting "
            "BILEVEL_DATA_DIR (data_dir) is not set"
        )
    path = Path(data_dir).expanduser()
    if not (path / folder).is_dir():
        raise DataMissing(
            f"{kind} reads {folder}/ from the worker's BILEVEL_DATA_DIR={path}, but "
            f"{path / folder} is not a directory"
        )
    return path
