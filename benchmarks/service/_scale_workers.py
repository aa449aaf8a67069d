"""The scale benchmark's actors: simulated workers, the sampler, the endpoint prober, the feeder.

A simulated worker does what a Celery worker does to the store, through the same functions
(:func:`jobs.store.repo.claim_next`, ``heartbeat_with_trace``, ``finish_with_trace``,
``beat_worker``), but "runs" a job by sleeping: no torch, so one small machine drives
hundreds of them. Workers are threads in a few processes (``spawn``: no engine crosses a
fork); each process shares one bounded connection pool among its threads, as workers behind
PgBouncer share its server connections.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

__all__ = ["Feeder", "Prober", "Sampler", "worker_process"]


def _one_worker(
    name: str, sessions: sessionmaker[Session], cfg: dict[str, Any], stop: Any, fed: Any,
    out: dict[str, list[Any]],
) -> None:  # fmt: skip
    from jobs.status import JobStatus
    from jobs.store import repo

    policy = repo.Policy(cpu_limit=cfg["limit"], preemption=False)
    rng = random.Random(name)
    lease, beat_s, points = cfg["lease_s"], cfg["heartbeat_s"], cfg["points_per_job"]
    last_beat = 0.0
    while not stop.is_set():
        if time.monotonic() - last_beat > 5.0:
            with sessions.begin() as s:
                repo.beat_worker(s, name, "cpu")
            last_beat = time.monotonic()
        t0 = time.perf_counter()
        with sessions.begin() as s:
            s.connection()  # the checkout, timed apart from the claim's transaction
            t1 = time.perf_counter()
            got = repo.claim_next(s, "cpu", name, lease, policy)
        t2 = time.perf_counter()
        if not isinstance(got, repo.Claim):
            out["idle"].append((time.time(), t2 - t1))
            if got is False and fed.is_set():
                return
            time.sleep(0.05)
            continue
        out["claims"].append((time.time(), t1 - t0, t2 - t1, str(got.job_id)))
        run_s = cfg["job_s"] * rng.uniform(0.5, 1.5)
        end, it = time.monotonic() + run_s, 0
        state = repo.LeaseState.OK
        while state is repo.LeaseState.OK:
            time.sleep(max(0.0, min(beat_s, end - time.monotonic())))
            last = time.monotonic() >= end
            k = points if last else min(points - 1, it + max(1, points // 4))
            recs = [{"iteration": i, "outer_loss": 1.0 / i, "grad_norm": 0.5, "lr": 0.01,
                     "time_s": 0.01 * i} for i in range(it + 1, k + 1)]  # fmt: skip
            it = k
            with sessions.begin() as s:  # a flush of the worker's trace writer: one call each
                if last:
                    summary = {"final_outer_loss": 1.0 / max(it, 1)}
                    repo.finish_with_trace(s, got, JobStatus.SUCCEEDED, recs, iteration=it,
                                           summary=summary)  # fmt: skip
                    break
                state = repo.heartbeat_with_trace(s, got, lease, recs, iteration=it,
                                                  eta_s=end - time.monotonic())  # fmt: skip
        out["busy"].append(run_s)


def worker_process(
    url: str, index: int, threads: int, conns: int, cfg: dict[str, Any], stop: Any, fed: Any,
    results: Any,
) -> None:  # fmt: skip
    """Run ``threads`` simulated workers on one pool of ``conns`` connections; report."""
    import sys

    from jobs.store.db import make_engine, make_session_factory

    # a thread back from the database waits for the GIL up to the switch interval (5 ms by
    # default) at each statement; the claim's thread holds the kind's lock meanwhile, so with
    # dozens of threads per process the default would measure the simulator, not the store
    sys.setswitchinterval(0.0002)
    engine = make_engine(url, pool_size=conns, max_overflow=0, pre_ping=False)
    sessions = make_session_factory(engine)
    out: dict[str, list[Any]] = {"claims": [], "idle": [], "busy": [], "errors": []}

    def run(k: int) -> None:
        try:
            _one_worker(f"sim-{index}-{k}", sessions, cfg, stop, fed, out)
        except Exception as exc:  # reported, not swallowed: the run's JSON names it
            out["errors"].append(f"sim-{index}-{k}: {type(exc).__name__}: {exc}")

    ts = [threading.Thread(target=run, args=(k,), daemon=True) for k in range(threads)]
    for t in ts:
        t.start()
        time.sleep(0.01)  # a gentle start, not 50 claims in one instant per process
    for t in ts:
        t.join()
    engine.dispose()
    results.put(out)


class Sampler(threading.Thread):
    """Every ``period_s``: each team's running and queued jobs (fairness, utilisation)."""

    def __init__(self, sessions: sessionmaker[Session], period_s: float):
        super().__init__(daemon=True)
        self.sessions, self.period_s = sessions, period_s
        self.samples: list[tuple[float, dict[str, tuple[int, int]]]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        q = text("SELECT team_id, count(*) FILTER (WHERE status = 'running'),"
                 " count(*) FILTER (WHERE status = 'queued') FROM jobs"
                 " WHERE status IN ('queued', 'running') GROUP BY team_id")  # fmt: skip
        while not self.halt.wait(self.period_s):
            with self.sessions() as s:
                rows = s.execute(q).all()
            self.samples.append((time.time(), {str(t): (int(r), int(n)) for t, r, n in rows}))


class Prober(threading.Thread):
    """Round after round of GETs on ``paths``, each timed; a pause of ``gap_s`` between."""

    def __init__(self, client: httpx.Client, paths: dict[str, str], gap_s: float):
        super().__init__(daemon=True)
        self.client, self.paths, self.gap_s = client, paths, gap_s
        self.times: dict[str, list[float]] = {k: [] for k in paths}
        self.failures: list[str] = []
        self.halt = threading.Event()

    def one_round(self) -> None:
        """GET every path once."""
        for label, path in self.paths.items():
            t0 = time.perf_counter()
            try:
                r = self.client.get(path)
            except httpx.TimeoutException:  # counted at its timeout, and named
                self.times[label].append(time.perf_counter() - t0)
                self.failures.append(f"{label}: no answer in {time.perf_counter() - t0:.0f} s")
                continue
            self.times[label].append(time.perf_counter() - t0)
            if r.status_code != 200:
                self.failures.append(f"{label}: {r.status_code} {r.text[:200]}")
            if self.halt.wait(self.gap_s):
                return

    def run(self) -> None:
        while not self.halt.is_set():
            self.one_round()


class Feeder(threading.Thread):
    """Queues each live study when its time comes, then says the feed is over."""

    def __init__(self, studies: list[Any], queue_one: Callable[[Any], int], fed: Any):
        super().__init__(daemon=True)
        self.studies, self.queue_one, self.fed = studies, queue_one, fed
        self.queued = 0
        self.ids: list[uuid.UUID] = []

    def run(self) -> None:
        t0 = time.monotonic()
        try:
            for st in self.studies:
                time.sleep(max(0.0, st.at_s - (time.monotonic() - t0)))
                self.queued += self.queue_one(st)
        finally:
            self.fed.set()
