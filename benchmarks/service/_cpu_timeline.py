"""Who is on the CPUs while ``benchmarks.service.load`` runs, and what slow requests overlap.

A p99 is set by the slowest 1% of requests, and on a 2-core machine a request is slow mostly
because it waited for a core. To say *what* it waited behind, a sampler process reads
``/proc`` every ``interval`` seconds and books each process's CPU time (``utime + stime`` of
``/proc/PID/stat``) to a role: the API's processes, the Celery workers, PostgreSQL's
backends, Redis, the load's own client process, the sampler itself, and everything else on
the machine by command name (other agents' work shows up there). It also keeps the run queue
(runnable tasks, the fourth field of ``/proc/loadavg``) and the CPU pressure stall counter
(``/proc/pressure/cpu``: the share of time some runnable task waited for a core).

The sampler is a separate process, not a thread, so that reading ``/proc`` does not take
the GIL from the client whose latencies are being measured. :func:`attribute` then puts each
request beside the samples its lifetime overlaps and compares the slow requests (at or over
the target) with the rest.
"""

from __future__ import annotations

import bisect
import json
import multiprocessing as mp
import os
import statistics
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["CpuSampler", "attribute", "loop_lag_probe"]

TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_table() -> dict[int, tuple[int, str, int]]:
    """``pid -> (ppid, command, cpu ticks)`` for every process that can be read."""
    out: dict[int, tuple[int, str, int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                raw = f.read().decode(errors="replace")
        except OSError:  # gone between listdir and open
            continue
        # the command is in parentheses and may itself hold spaces or parentheses
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        out[int(name)] = (int(fields[1]), comm, int(fields[11]) + int(fields[12]))
    return out


def _postgres_role(pid: int, database: str | None) -> str:
    """A backend's title names its database: this run's backends apart from others'."""
    if database is None:
        return "postgres"
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            title = f.read().decode(errors="replace")
    except OSError:
        return "postgres"
    return "postgres" if f" {database} " in title else "other:postgres"


def _role(
    pid: int,
    table: dict[int, tuple[int, str, int]],
    roots: dict[int, str],
    database: str | None = None,
) -> str:
    """The role of ``pid``: its own or its nearest listed ancestor's, else by command."""
    p, seen = pid, 0
    while p in table and seen < 64:
        if p in roots:
            return roots[p]
        p, seen = table[p][0], seen + 1
    comm = table[pid][1]
    if comm.startswith("postgres"):
        return _postgres_role(pid, database)
    if comm.startswith("redis"):
        return "redis"
    return f"other:{comm}"


def _psi_total() -> int | None:
    try:
        with open("/proc/pressure/cpu") as f:
            return int(f.readline().rsplit("total=", 1)[1])
    except (OSError, IndexError, ValueError):
        return None


def _sample_loop(
    roots: dict[int, str], database: str | None, interval: float, out: str, stop: Any
) -> None:
    roots = {**roots, os.getpid(): "sampler"}
    parent = os.getppid()
    prev = {pid: ticks for pid, (_, _, ticks) in _proc_table().items()}
    prev_t, prev_psi = time.monotonic(), _psi_total()
    with open(out, "w") as f:
        # a run killed before stop() must not leave its sampler behind: it goes with its parent
        while not stop.wait(interval) and os.getppid() == parent:
            table = _proc_table()
            now, psi = time.monotonic(), _psi_total()
            dt = now - prev_t
            cores: dict[str, float] = {}
            for pid, (_, _, ticks) in table.items():
                d = ticks - prev.get(pid, ticks)  # a process born since: counted from now on
                if d > 0:
                    role = _role(pid, table, roots, database)
                    cores[role] = cores.get(role, 0.0) + d / TICK / dt
            with open("/proc/loadavg") as la:
                runnable = int(la.read().split()[3].split("/")[0])
            stall = None if psi is None or prev_psi is None else (psi - prev_psi) / 1e6 / dt
            row = {"t": now, "dt": dt, "cores": cores, "runnable": runnable, "stall": stall}
            f.write(json.dumps(row) + "\n")
            f.flush()
            prev = {pid: ticks for pid, (_, _, ticks) in table.items()}
            prev_t, prev_psi = now, psi


class CpuSampler:
    """Samples ``/proc`` in a child process from :meth:`start` to :meth:`stop`.

    Args:
        roots: ``pid -> role`` of the processes to name (their children inherit the role).
        path: where the samples go, one JSON line each.
        database: this run's database: its backends are ``postgres``, the rest of
            PostgreSQL's processes (other databases, the server's own) ``other:postgres``.
        interval: seconds between samples.
    """

    def __init__(
        self,
        roots: dict[int, str],
        path: Path,
        interval: float = 0.1,
        database: str | None = None,
    ) -> None:
        ctx = mp.get_context("spawn")  # no copy of the client's event loop or sockets
        self.path, self._stop = path, ctx.Event()
        self._proc = ctx.Process(
            target=_sample_loop,
            args=(roots, database, interval, str(path), self._stop),
            daemon=True,
        )

    def start(self) -> None:
        self._proc.start()

    def stop(self) -> list[dict[str, Any]]:
        """Stops the sampler; its samples, oldest first."""
        self._stop.set()
        self._proc.join(10)
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line]


async def loop_lag_probe(lags: list[tuple[float, float]], done: Any, period: float = 0.05) -> None:
    """Records ``(monotonic time, seconds late)`` of a timer on the client's own event loop.

    A request is timed by the client, so a busy client loop inflates every latency it
    reports; the lag says how much of a slow request was the client's own queue.
    """
    import asyncio

    while not done():
        t = time.monotonic()
        await asyncio.sleep(period)
        lags.append((time.monotonic(), time.monotonic() - t - period))


def _mean_over(
    samples: list[dict[str, Any]], start: float, end: float
) -> tuple[dict[str, float], float, float | None]:
    """Cores by role, runnable tasks and stall share averaged over samples overlapping a span."""
    hit = [s for s in samples if s["t"] - s["dt"] < end and s["t"] > start]
    if not hit:  # a span shorter than one interval: the sample that holds its end
        later = [s for s in samples if s["t"] >= end]
        hit = later[:1]
    if not hit:
        return {}, 0.0, None
    cores: dict[str, float] = {}
    for s in hit:
        for role, c in s["cores"].items():
            cores[role] = cores.get(role, 0.0) + c / len(hit)
    stalls = [s["stall"] for s in hit if s["stall"] is not None]
    stall = statistics.fmean(stalls) if stalls else None
    return cores, statistics.fmean(s["runnable"] for s in hit), stall


def _fold(roles: Iterable[dict[str, float]], n: int, top: int) -> dict[str, float]:
    """The mean cores of each role over ``n`` requests; foreign roles beyond ``top`` pooled."""
    total: dict[str, float] = {}
    for r in roles:
        for role, c in r.items():
            total[role] = total.get(role, 0.0) + c / max(n, 1)
    own = {k: v for k, v in total.items() if not k.startswith("other:")}
    other = sorted(((v, k) for k, v in total.items() if k.startswith("other:")), reverse=True)
    for v, k in other[:top]:
        own[k] = v
    own["other (rest)"] = sum(v for v, _ in other[top:])
    return {k: round(v, 3) for k, v in sorted(own.items(), key=lambda kv: -kv[1])}


def _loop(row: tuple[float, ...]) -> float:
    """The event loop a request or a lag row belongs to (one loop: 0)."""
    return row[2] if len(row) > 2 else 0


def _worst_lag(loop: tuple[list[float], list[float]], start: float, end: float) -> float:
    """The largest lag one loop recorded from ``start`` to ``end`` (its rows sorted by time)."""
    at, lag = loop
    inside = lag[bisect.bisect_left(at, start) : bisect.bisect_right(at, end)]
    return max(inside, default=0.0)


def attribute(
    requests: Sequence[tuple[float, ...]],
    samples: list[dict[str, Any]],
    lags: Sequence[tuple[float, ...]],
    slow_s: float,
    top: int = 6,
) -> dict[str, Any]:
    """What the CPUs did during slow requests against the rest.

    Args:
        requests: ``(monotonic start, seconds)`` of each timed request, or ``(start,
            seconds, loop)`` where the client runs several event loops.
        samples: :meth:`CpuSampler.stop`'s rows.
        lags: :func:`loop_lag_probe`'s rows, ``(at, lag)`` or ``(at, lag, loop)``: a request
            is set beside its own loop's lags only.
        slow_s: a request this long or longer is slow (the target).
        top: how many foreign commands to name.

    Returns:
        For ``slow`` and ``fast`` requests: their count, the mean cores in use by role, the
        mean runnable tasks and CPU stall share, and the client loop's worst lag inside them.
    """
    out: dict[str, Any] = {"slow_ms": slow_s * 1e3, "samples": len(samples)}
    by_loop: dict[float, tuple[list[float], list[float]]] = {}
    for row in sorted(lags, key=lambda r: r[0]):
        at, lag = by_loop.setdefault(_loop(row), ([], []))
        at.append(row[0])
        lag.append(row[1])
    for name, group in (
        ("slow", [r for r in requests if r[1] >= slow_s]),
        ("fast", [r for r in requests if r[1] < slow_s]),
    ):
        spans = [_mean_over(samples, r[0], r[0] + r[1]) for r in group]
        worst_lag = [_worst_lag(by_loop.get(_loop(r), ([], [])), r[0], r[0] + r[1])
                     for r in group]  # fmt: skip
        stalls = [s for _, _, s in spans if s is not None]
        out[name] = {
            "requests": len(group),
            "cores": _fold((c for c, _, _ in spans), len(group), top),
            "runnable": round(statistics.fmean(r for _, r, _ in spans), 2) if spans else None,
            "cpu_stall_share": round(statistics.fmean(stalls), 3) if stalls else None,
            "client_loop_lag_ms_mean": round(statistics.fmean(worst_lag) * 1e3, 2)
            if worst_lag
            else None,
        }
    return out
