"""torch.compile's caches on a worker: on disk across jobs and restarts, in memory across jobs.

A compile finds its work in one of three places (:data:`CACHES`), cheapest first: the
process already holds the compiled code of a job of the same key (``"memory"``: a guard
check), the disk cache under the worker's compile cache directory holds its kernels and
AOTAutograd graphs (``"disk"``: Dynamo traces again, the rest loads), or nothing does
(``"cold"``). :class:`CompileTimes` keeps what each costs, and the speed-up compiling
bought, per key (``worker.compile_choice.compile_key``) so that ``"auto"`` weighs the cost
this job will pay; :func:`keep_compiled_for` decides per job whether the process keeps its
compiled code.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "CACHES",
    "CompileTimes",
    "Prior",
    "compile_counts",
    "keep_compiled_for",
    "note_graphs",
    "resident_key",
    "use_compile_cache",
]

log = logging.getLogger(__name__)

#: where a compile found its work, cheapest first: compiled code in this process, kernels in
#: the disk cache, nothing
CACHES = ("memory", "disk", "cold")


@dataclass(frozen=True)
class Prior:
    """What the other keys measured on this worker suggest for a key not measured yet.

    A key's speed-up is known only after its first compiled job; its first job would then
    always run eagerly. The keys of the same problem kind and method (the same step at other
    shapes) compile to the same kind of graph, so their speed-ups and cold compile times are
    the best guess there is; failing those, any key's. ``scope`` says which.

    Attributes:
        speedups: the speed-ups measured on those keys (at least one).
        compile_s: the slowest cold compile among them, ``None`` if none was timed.
        scope: ``"kind|method"`` (the same kind and method) or ``"any"`` (any key).
        keys: how many keys they are.
    """

    speedups: tuple[float, ...]
    compile_s: float | None
    scope: str
    keys: int


@dataclass
class CompileTimes:
    """What compiling costs and buys on this worker, by :func:`compile_key`, in a JSON file.

    Per key: the seconds of the latest compile from each cache (:data:`CACHES`), and the
    latest speed-up measured (eager over compiled hypergradient time). A missing or
    unreadable file reads as empty, an older file's entry (a number) as a cold compile;
    writes go through a temporary file and a rename.
    """

    path: Path

    def get(self, key: str, cache: str = "cold") -> float | None:
        """The last compile time measured for ``key`` from ``cache``, else from a colder one.

        A colder compile is the safe stand-in: it costs at least as much.
        """
        entry = self._entry(key)
        for state in CACHES[CACHES.index(cache) :]:
            value = entry.get(state)
            if isinstance(value, int | float):
                return float(value)
        return None

    def speedup(self, key: str) -> float | None:
        """The last speed-up of compiling measured for ``key``."""
        return _speedup(self._entry(key))

    def prior(self, key: str) -> Prior | None:
        """What the other keys measured here suggest for ``key`` (:class:`Prior`), if any.

        Keys of the same kind and method (the first two fields of
        ``worker.compile_choice.compile_key``) first, else every other key; ``None`` when no
        other key has a measured speed-up.
        """
        family = "|".join(key.split("|")[:2]) + "|"
        others = {k: _as_entry(v) for k, v in self._read().items() if k != key}
        for scope, keys in (
            ("kind|method", [k for k in others if k.startswith(family)]),
            ("any", list(others)),
        ):
            measured = {k: s for k in keys if (s := _speedup(others[k])) is not None}
            if measured:
                colds = [others[k].get("cold") for k in measured]
                cold = [float(c) for c in colds if isinstance(c, int | float)]
                speedups = tuple(measured.values())
                return Prior(speedups, max(cold) if cold else None, scope, len(measured))
        return None

    def known(self, key: str) -> bool:
        """Whether a compile of ``key`` finished here (its kernels are in the disk cache)."""
        return any(state in self._entry(key) for state in CACHES)

    def put(
        self, key: str, seconds: float | None = None, *, cache: str = "cold",
        speedup: float | None = None,
    ) -> None:  # fmt: skip
        """Record a compile of ``seconds`` from ``cache``, or a measured ``speedup``."""
        entry = self._entry(key)
        if seconds is not None:
            entry[cache] = round(seconds, 3)
        if speedup is not None:
            entry["speedup"] = round(speedup, 3)
        data = {**self._read(), key: entry}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, sort_keys=True)
            os.replace(tmp, self.path)
        except OSError:  # a cache that cannot be written costs a prior next time, no more
            log.warning("compile times: cannot write %s", self.path, exc_info=True)

    def _entry(self, key: str) -> dict[str, Any]:
        return _as_entry(self._read().get(key))

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}


def _as_entry(value: Any) -> dict[str, Any]:
    """A key's entry; an older worker's number is a cold compile time."""
    if isinstance(value, int | float):
        return {"cold": float(value)}
    return dict(value) if isinstance(value, dict) else {}


def _speedup(entry: dict[str, Any]) -> float | None:
    value = entry.get("speedup")
    return float(value) if isinstance(value, int | float) and value > 0 else None


@dataclass
class _Resident:
    """The key whose compiled code this process holds, and the graphs compiled since reset."""

    key: str | None = None
    graphs: int = 0


_RESIDENT = _Resident()


def resident_key() -> str | None:
    """The key whose compiled code this process holds (:func:`keep_compiled_for`)."""
    return _RESIDENT.key


def note_graphs(n: int) -> None:
    """Count ``n`` graphs compiled into this process's code since its last reset."""
    _RESIDENT.graphs += n


# graphs one job may add (no-graph and recorded steps, a recompile): keep room for them
_GRAPHS_PER_JOB = 4


def keep_compiled_for(key: str) -> str:
    """Before a job's first compiled call: keep this process's compiled code if it is ``key``'s.

    torch.compile keeps at most ``recompile_limit`` variants of one function and past them
    runs it eagerly, without a word. So the code of earlier jobs is dropped
    (``torch.compiler.reset()``) when a job of another key comes, or when the variants
    compiled since (a sweep over a constant the step reads adds some per job) near the
    limit; kept, a job like the last one starts with its code in memory. The kernels stay
    on disk either way.

    Returns:
        ``"memory"`` when the code was kept, else ``"reset"``.
    """
    limit = int(torch._dynamo.config.recompile_limit)
    if _RESIDENT.key == key and _RESIDENT.graphs + _GRAPHS_PER_JOB <= limit:
        return "memory"
    torch.compiler.reset()
    _RESIDENT.key, _RESIDENT.graphs = key, 0
    return "reset"


def compile_counts() -> tuple[int, int]:
    """torch.compile's counts so far: graphs Dynamo traced, and disk-cache misses."""
    from torch._dynamo.utils import counters

    misses = counters["inductor"]["fxgraph_cache_miss"]
    misses += counters["aot_autograd"]["autograd_cache_miss"]
    return counters["stats"]["unique_graphs"], misses


def use_compile_cache(path: Path) -> None:
    """Point torch.compile's disk caches at the worker's shared directory ``path`` (unless the
    operator did).

    Inductor reads ``TORCHINDUCTOR_CACHE_DIR`` when it first compiles, after this runs: its
    kernels and AOTAutograd's graphs persist there across jobs and worker restarts, so a
    job like an earlier one skips most of the compilation (``"disk"`` in its summary).
    Compiled code in memory is kept or dropped per job by :func:`keep_compiled_for`.
    """
    path.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(path))
