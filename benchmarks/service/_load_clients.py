"""The clients of ``benchmarks.service.load``: submitters, and pollers acting like the dashboard."""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import httpx

from api.servertiming import app_duration_ms
from jobs.status import TERMINAL, JobStatus
from tests.support import tiny_spec

# the columns the dashboard's job page asks for (api/static/js/detail.js)
FIELDS = "outer_loss,grad_norm,exact_norm,cosine,rel_error"


def client_for(base: str, key: str) -> httpx.AsyncClient:
    """One dashboard's (or submitter's) HTTP client: its own connections and API key."""
    return httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30)


class LoadState:
    """What the clients share: the jobs submitted, which are done, and every timing."""

    def __init__(self, args):
        self.args = args
        self.submitted: dict[str, int] = {}  # job id -> iterations
        self.order: list[str] = []
        self.finished: set[str] = set()
        self.next_index = 0
        self.submits_left = args.jobs
        self.submitters_done = 0
        self.samples: dict[str, list[tuple[float, int]]] = {}
        self.t0 = time.perf_counter()
        self.t0_mono = time.monotonic()
        # start, route, seconds, status, the app's own ms (its Server-Timing; None: no answer)
        self.timeline: list[tuple[float, str, float, int, float | None]] = []
        self.error_samples: list[str] = []
        self.follows: list[dict[str, Any]] = []
        self.listeners: list[Callable[[str, int], None]] = []  # told of each new job

    async def request(
        self, client: httpx.AsyncClient, route: str, method: str, url: str, **kw
    ) -> httpx.Response | None:
        t0 = time.perf_counter()
        try:
            r = await client.request(method, url, **kw)
        except httpx.HTTPError as exc:
            self._record(route, t0, 0, None)
            self.error_samples.append(f"{method} {url}: {type(exc).__name__}: {exc}")
            return None
        self._record(route, t0, r.status_code, app_duration_ms(r.headers.get("server-timing")))
        if r.status_code >= 400:
            self.error_samples.append(f"{method} {url}: {r.status_code} {r.text[:200]}")
        return r

    def _record(self, route: str, t0: float, status: int, app_ms: float | None) -> None:
        elapsed = time.perf_counter() - t0
        self.samples.setdefault(route, []).append((elapsed, status))
        self.timeline.append((t0 - self.t0, route, elapsed, status, app_ms))

    def add_job(self, job_id: str, iterations: int) -> None:
        """A job submitted (again, for a retried submit: once): pollers may follow it."""
        if job_id not in self.submitted:
            self.submitted[job_id] = iterations
            self.order.append(job_id)
            for listener in self.listeners:
                listener(job_id, iterations)

    def all_done(self) -> bool:
        return self.submitters_done == self.args.submitters and self.finished >= set(self.order)

    def pick(self) -> str | None:
        """The next unfinished job, round-robin over those submitted so far."""
        for _ in range(len(self.order)):
            job = self.order[self.next_index % len(self.order)]
            self.next_index += 1
            if job not in self.finished:
                return job
        return None

    def poller_accounting(self) -> dict[str, int]:
        whole = [
            f for f in self.follows if f["status"] == JobStatus.SUCCEEDED and not f["downsampled"]
        ]
        return {
            "complete_follows": len(whole),
            "poller_points_expected": sum(f["iterations"] for f in whole),
            "poller_points_missed": sum(f["iterations"] - f["unique"] for f in whole),
            "poller_points_doubled": sum(f["received"] - f["unique"] for f in whole),
        }


async def submitter(state: LoadState, client: httpx.AsyncClient, index: int) -> None:
    """Submit jobs until ``--jobs`` are in, spread over ``--submit-over`` seconds."""
    a = state.args
    gap = a.submit_over * a.submitters / max(a.jobs, 1)
    await asyncio.sleep(index * gap / max(a.submitters, 1))
    while state.submits_left > 0:
        state.submits_left -= 1
        n = a.jobs - state.submits_left
        spec = tiny_spec(iterations=a.iterations, steps=a.steps, name=f"load {n}")
        # a retried submit with the same key is one job, as a careful client does it
        for _ in range(3):
            r = await state.request(
                client,
                "POST /v1/jobs",
                "POST",
                "/v1/jobs",
                json=spec,
                headers={"Idempotency-Key": f"load-{n}"},
            )
            if r is not None and r.status_code == 201:
                job = r.json()
                state.add_job(job["id"], job["progress"]["iterations"])
                break
            await asyncio.sleep(1.0)
        await asyncio.sleep(gap)
    state.submitters_done += 1


async def poller(state: LoadState, client: httpx.AsyncClient, index: int) -> None:
    """One dashboard tab: follow a job to its end, then open the next unfinished one.

    People open pages at their own moments: a random offset at start and a random pause
    before the next job keep the pollers' timers out of step, as a dashboard's are.
    """
    rng = random.Random(index)
    first = True
    await asyncio.sleep(rng.uniform(0, state.args.poll_min))
    while not state.all_done():
        job = state.order[index % len(state.order)] if first and state.order else state.pick()
        if job is None or job in state.finished:
            # a pause of its own, not a fixed tick: with a fixed one every idle poller woke
            # in the same instant and opened the next job submitted together (a herd of 40
            # first polls in one 0.2 s, measured, that made the run's p99 by itself)
            await asyncio.sleep(rng.uniform(0.1, state.args.poll_min))
            continue
        first = False
        await _follow(state, client, job)
        await asyncio.sleep(rng.uniform(0, state.args.poll_min))


async def _follow(state: LoadState, client: httpx.AsyncClient, job_id: str) -> None:
    a = state.args
    delay, last, etag, etag_url = a.poll_min, 0, None, None
    seen: set[int] = set()
    received, downsampled, updated = 0, False, None
    job: dict[str, Any] | None = None
    job_etag: str | None = None
    while True:
        # as detail.js does: If-None-Match on the job too, and its last body on a 304
        hdrs: dict[str, str] = {"If-None-Match": job_etag} if job_etag else {}
        r = await state.request(
            client, "GET /v1/jobs/{id}", "GET", f"/v1/jobs/{job_id}", headers=hdrs
        )
        if r is None or r.status_code not in (200, 304) or (r.status_code == 304 and not job):
            delay = max(delay, min(a.poll_max, 5.0))  # the dashboard's back-off on errors
            await asyncio.sleep(delay)
            continue
        if r.status_code == 200:
            job, job_etag = r.json(), r.headers.get("ETag")
        assert job is not None  # a 304 is answered only after a 200 gave the body
        changed = job["updated_at"] != updated
        updated = job["updated_at"]
        url = f"/v1/jobs/{job_id}/trace?after={last}&max_points={a.max_points}&fields={FIELDS}"
        headers: dict[str, str] = {"If-None-Match": etag} if etag and etag_url == url else {}
        t = await state.request(client, "GET /v1/jobs/{id}/trace", "GET", url, headers=headers)
        if t is not None and t.status_code == 200:
            cols = t.json()
            its = cols["iteration"]
            downsampled |= int(t.headers.get("X-Trace-Points", len(its))) > len(its)
            received += len(its)
            seen.update(its)
            changed = changed or bool(its) or last == 0
            if its:
                last = its[-1]
            etag, etag_url = t.headers.get("ETag"), url
        if job["status"] in TERMINAL:
            state.finished.add(job_id)
            state.follows.append(
                {
                    "job": job_id,
                    "status": job["status"],
                    "iterations": state.submitted.get(job_id, job["progress"]["iterations"]),
                    "unique": len(seen),
                    "received": received,
                    "downsampled": downsampled,
                }
            )
            return
        delay = a.poll_min if changed else min(a.poll_max, delay * 1.6)
        await asyncio.sleep(delay)


def app_share(
    timeline: list[tuple[float, str, float, int, float | None]], slow_s: float
) -> dict[str, dict[str, Any]]:
    """Of the polls at least (``slow``) and under (``fast``) ``slow_s``: the app's own time.

    The rest of a poll's time is spent outside the app: in the listen queue and uvicorn's
    loop before it, and in this client's loop after the answer came (a core for either).
    """
    out = {}
    for name, keep in (("slow", lambda d: d >= slow_s), ("fast", lambda d: d < slow_s)):
        rows = [(d * 1e3, app) for _, route, d, _, app in timeline
                if route.startswith("GET") and app is not None and keep(d)]  # fmt: skip
        n = len(rows)
        out[name] = {
            "requests": n,
            "total_ms_mean": round(sum(d for d, _ in rows) / n, 2) if n else None,
            "app_ms_mean": round(sum(a for _, a in rows) / n, 2) if n else None,
            "app_ms_max": round(max(a for _, a in rows), 2) if n else None,
            "app_over_half": sum(1 for d, a in rows if a > d / 2),
        }
    return out


def stats(samples: list[tuple[float, int]]) -> dict[str, Any]:
    """Count, errors, 304s and latency quantiles (ms) of ``(seconds, status)`` samples."""
    if not samples:
        return {
            "requests": 0,
            "errors": 0,
            "not_modified": 0,
            "p50_ms": 0.0,
            "p99_ms": 0.0,
            "max_ms": 0.0,
        }
    ms = sorted(s * 1e3 for s, _ in samples)
    q = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else ms * 99
    return {
        "requests": len(samples),
        "errors": sum(1 for _, code in samples if code == 0 or code >= 400),
        "not_modified": sum(1 for _, code in samples if code == 304),
        "p50_ms": round(q[49], 2),
        "p99_ms": round(q[98], 2),
        "max_ms": round(ms[-1], 2),
    }
