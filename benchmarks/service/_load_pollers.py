"""The load benchmark's pollers spread over processes, one event loop each, as browsers are.

Fifty dashboard tabs are fifty browsers; one asyncio loop playing all of them handles each
answer only when the other pollers' work before it is done, and that wait is booked to the
service. Measured (2026-12-06, one loop for 50 pollers): during the polls over 50 ms the
client's loop ran 20-33 ms late on average, against 0.3-0.8 ms during the rest. Here
``--client-processes`` spawned processes each run their share of the pollers on their own
loop (uvloop where installed, the loop the API's uvicorn runs on). The submitters stay in
the parent, which hands every job it submits to each process, and then says the submitting
is over; each process follows jobs until it has seen every one finish and sends back its
timings. ``time.perf_counter`` is the system's monotonic clock on Linux, so the processes'
request times share the parent's origin.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import queue
from typing import Any

from benchmarks.service._cpu_timeline import loop_lag_probe
from benchmarks.service._load_clients import LoadState, client_for, poller

__all__ = ["PollerProcesses"]


def _new_loop_policy() -> None:
    try:
        import uvloop
    except ImportError:  # not on this platform: asyncio's own loop
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _poller_main(
    config: dict[str, Any], base: str, keys: list[str], first: int, loop_id: int,
    inbox: Any, outbox: Any,
) -> None:  # fmt: skip
    """A child: ``keys`` are its pollers' (their indices start at ``first``)."""
    _new_loop_policy()
    state = LoadState(argparse.Namespace(**config))
    lags: list[tuple[float, float]] = []

    async def feed() -> None:
        # the parent's messages: ("job", id, iterations), then ("done",)
        while state.submitters_done < state.args.submitters:
            try:
                msg = inbox.get_nowait()
            except queue.Empty:
                await asyncio.sleep(0.02)
                continue
            if msg[0] == "job":
                state.add_job(msg[1], msg[2])
            elif msg[0] == "done":
                state.submitters_done = state.args.submitters

    async def run() -> None:
        clients = [client_for(base, k) for k in keys]
        outbox.put(("ready", loop_id))
        go = await asyncio.get_running_loop().run_in_executor(None, inbox.get)
        state.t0, state.t0_mono = go[1], go[2]  # the parent's origin: one timeline
        probe = asyncio.ensure_future(loop_lag_probe(lags, lambda: False))
        try:
            await asyncio.gather(
                feed(), *(poller(state, c, first + i) for i, c in enumerate(clients))
            )
        finally:
            probe.cancel()
            for c in clients:
                await c.aclose()

    asyncio.run(run())
    outbox.put(
        (
            "result",
            {
                "loop": loop_id,
                "samples": state.samples,
                "timeline": state.timeline,
                "follows": state.follows,
                "errors": state.error_samples,
                "finished": sorted(state.finished),
                "lags": lags,
            },
        )
    )


class PollerProcesses:
    """``processes`` children, each with a contiguous block of ``keys`` (one per poller)."""

    def __init__(self, config: dict[str, Any], base: str, keys: list[str], processes: int):
        ctx = mp.get_context("spawn")  # no copy of the parent's loop, sockets or engine
        self.outbox: Any = ctx.Queue()
        self.inboxes: list[Any] = []
        self.procs = []
        n = max(1, min(processes, len(keys)))
        bounds = [round(i * len(keys) / n) for i in range(n + 1)]
        for i in range(n):
            inbox = ctx.Queue()
            lo, hi = bounds[i], bounds[i + 1]
            # loop ids from 1: the parent's own loop (the submitters') is 0
            proc = ctx.Process(
                target=_poller_main,
                args=(config, base, keys[lo:hi], lo, i + 1, inbox, self.outbox),
                daemon=True,
            )
            self.inboxes.append(inbox)
            self.procs.append(proc)

    def start(self, timeout: float = 120.0) -> None:
        """Start the children and wait until each has its clients made."""
        for p in self.procs:
            p.start()
        for _ in self.procs:
            msg = self.outbox.get(timeout=timeout)
            if msg[0] != "ready":
                raise RuntimeError(f"a poller process said {msg!r} before it was ready")

    def go(self, t0: float, t0_mono: float) -> None:
        """Tell every child to begin, timing from the parent's origin."""
        for inbox in self.inboxes:
            inbox.put(("go", t0, t0_mono))

    def submitted(self, job_id: str, iterations: int) -> None:
        """A job the parent submitted: every child may follow it."""
        for inbox in self.inboxes:
            inbox.put(("job", job_id, iterations))

    def done_submitting(self) -> None:
        for inbox in self.inboxes:
            inbox.put(("done",))

    async def results(self, timeout: float) -> list[dict[str, Any]]:
        """Each child's timings, once it has seen every job finish."""
        loop = asyncio.get_running_loop()
        out = []
        for _ in self.procs:
            msg = await loop.run_in_executor(None, self.outbox.get, True, timeout)
            out.append(msg[1])
        for p in self.procs:
            p.join(10)
        return out

    def kill(self) -> None:
        for p in self.procs:
            if p.is_alive():
                p.kill()
