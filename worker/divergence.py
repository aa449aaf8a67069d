"""Watching a running job for divergence: its outer loss or hypergradient leaving its scale.

``core.fit`` already stops on a NaN or an infinity (``core.DivergenceError``). What it lets
through is a run that stays finite while it blows up: an outer step that pushes the inner
step size past stability sends ``f(w_T, λ)`` from 20 to 3e9 for one iteration, or a plugin
whose loss ends at 6e141. :class:`DivergenceWatch` flags a value whose magnitude is more
than ``factor`` (two orders of magnitude by default) above its *reference*: the larger of
the first value of the run and the median of the last ``window`` values. The first value
anchors a run whose values fall (a drop to near zero does not make a later small rise look
like a blow-up); the median follows a run whose scale legitimately moves. A run that starts
diverged has no earlier value to compare with and is not flagged, nor is one whose reference
is exactly 0 (no scale to leave).

The job's summary keeps one entry per kind (``outer_loss``, ``hypergradient``): the first
iteration flagged with its value and reference, how many iterations were flagged, and the
largest value seen among them. With ``outer.stop_on_divergence`` the first one ends the job
``failed`` with :class:`~worker.errors.Diverged`.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Iterable
from typing import Any

__all__ = ["FACTOR", "WINDOW", "DivergenceWatch"]

#: how far above its reference a value must be to be flagged (two orders of magnitude)
FACTOR = 100.0
#: how many of the latest values the median reference is taken over
WINDOW = 10
# the record's columns watched, and the words a message uses for them
_WATCHED = {
    "outer_loss": ("outer_loss", "outer loss"),
    "hypergradient": ("grad_norm", "hypergradient norm"),
}


class _Series:
    """One watched column: its first value and the last ``window`` magnitudes."""

    def __init__(self, window: int):
        self.first: float | None = None
        self.recent: deque[float] = deque(maxlen=window)

    def reference(self) -> float | None:
        if self.first is None:
            return None
        return max(self.first, statistics.median(self.recent))

    def push(self, size: float) -> None:
        if self.first is None:
            self.first = size
        self.recent.append(size)


class DivergenceWatch:
    """Flags hyper-iterations whose outer loss or hypergradient norm leaves its scale.

    Args:
        factor: a value is flagged when ``|value| > factor * reference`` (or not finite).
        window: the median reference is over this many latest values.
        warnings: the summary's ``warnings`` of an earlier attempt, continued (a resumed job
            keeps what its first attempt saw; the references start again from the resume).

    Raises:
        ValueError: ``factor <= 1`` or ``window < 1``, naming the value.
    """

    def __init__(
        self, factor: float = FACTOR, window: int = WINDOW, warnings: Iterable[dict[str, Any]] = ()
    ):
        if not factor > 1:
            raise ValueError(f"factor must be > 1, got {factor}")
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.factor = factor
        self._series = {kind: _Series(window) for kind in _WATCHED}
        self._warnings: dict[str, dict[str, Any]] = {w["kind"]: dict(w) for w in warnings}

    @property
    def warnings(self) -> list[dict[str, Any]]:
        """One JSON-ready entry per kind flagged, in the order they were first flagged."""
        return [dict(w) for w in self._warnings.values()]

    def observe(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        """Check one hyper-iteration's record; return the warnings it raised first.

        Only a kind's first flagged iteration is returned (later ones update its count and
        largest value); a flagged value does not enter the reference, so a run that stays
        diverged stays flagged.
        """
        iteration = int(record["iteration"])
        new = []
        for kind, (column, words) in _WATCHED.items():
            value = record.get(column)
            if not isinstance(value, (int, float)):
                continue
            series = self._series[kind]
            ref = series.reference()
            size = abs(float(value))
            # a zero reference (a run that starts at exactly 0) gives no scale to leave
            if math.isfinite(size) and (not ref or size <= self.factor * ref):
                series.push(size)
                continue
            seen = self._warnings.get(kind)
            if seen is not None:
                seen["count"] += 1
                if not size <= seen["max"]:  # NaN compares false: kept as the largest
                    seen["max"], seen["max_iteration"] = _num(size), iteration
                continue
            entry = {
                "kind": kind,
                "iteration": iteration,
                "value": _num(float(value)),
                "reference": ref,
                "count": 1,
                "max": _num(size),
                "max_iteration": iteration,
                "message": _message(words, float(value), iteration, ref, self.factor),
            }
            self._warnings[kind] = entry
            new.append(dict(entry))
        return new


def _num(x: float) -> float | str:
    """``x`` for JSON: a non-finite value as its name (JSON has no NaN)."""
    return x if math.isfinite(x) else str(x)


def _message(words: str, value: float, iteration: int, ref: float | None, factor: float) -> str:
    if not math.isfinite(value) or ref is None:  # a finite value has a reference here
        return f"{words} is {value} at iteration {iteration}"
    return (
        f"{words} jumped to {value:.3g} at iteration {iteration}, "
        f"{abs(value) / ref:.3g}x its reference {ref:.3g} (more than {factor:g}x: the larger "
        "of its first value and the median of its latest ones)"
    )
