"""A job's trace: one column per recorded quantity, one row per hyper-iteration."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from client._optional import need

__all__ = ["Trace"]


class Trace(Mapping[str, list[Any]]):
    """The columns of ``GET /v1/jobs/{id}/trace`` as a read-only mapping.

    Columns: ``iteration``, ``outer_loss``, ``grad_norm``, ...; a missing value is ``None``.
    Every value but an iteration is a ``float``: JSON has one kind of number, and the server
    may write an integral double without its ``.0`` (PostgreSQL does), which ``json`` reads
    as an ``int``.

    Example:
        >>> t = Trace({"iteration": [1, 2], "outer_loss": [0.5, None]})
        >>> len(t), t["outer_loss"]
        (2, [0.5, None])
    """

    def __init__(self, columns: Mapping[str, list[Any]]):
        self._cols = {
            k: list(v) if k == "iteration" else [None if x is None else float(x) for x in v]
            for k, v in columns.items()
        }

    def __getitem__(self, name: str) -> list[Any]:
        return self._cols[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._cols)

    def __len__(self) -> int:
        """The number of rows (iterations)."""
        return len(self._cols.get("iteration", []))

    def __repr__(self) -> str:
        return f"Trace({len(self)} rows: {', '.join(self._cols)})"

    def to_numpy(self) -> dict[str, Any]:
        """Each column as a numpy array: ints for ``iteration``, floats (``nan``: missing)."""
        np = need("numpy", "Trace.to_numpy")
        return {
            k: np.asarray(v, dtype=np.int64)
            if k == "iteration"
            else np.asarray([np.nan if x is None else x for x in v], dtype=np.float64)
            for k, v in self._cols.items()
        }

    def to_pandas(self) -> Any:
        """The trace as a ``pandas.DataFrame`` indexed by ``iteration``."""
        pd = need("pandas", "Trace.to_pandas")
        return pd.DataFrame(self.to_numpy()).set_index("iteration")
