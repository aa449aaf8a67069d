"""The clients of ``benchmarks.service.chaos``: submitters, a study creator, an uploader, dashboard
pollers and a sampler of the quota invariants, each a thread that runs until told to stop.

Every client talks to both API processes through :class:`RetryingClient`, which moves to
the other process when one is down and retries what the service says is worth retrying
(connection errors, 503 while the store restarts, 429 at the queued quota). Job submits
carry an ``Idempotency-Key``, so a retry after an answer was lost cannot make a second job.
"""

from __future__ import annotations

import hashlib
import io
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from benchmarks.service._chaos_history import History
from tests.support import tiny_spec

# what the service answers while a fault lasts: the client is meant to try again
_RETRY_STATUSES = {429, 500, 502, 503, 504}


@dataclass
class Ledger:
    """What the clients were told, for the checks afterwards; shared by all threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    accepted: dict[str, str] = field(default_factory=dict)  # job id -> idempotency key
    submits_given_up: list[str] = field(default_factory=list)  # keys never answered 201
    studies: dict[str, int] = field(default_factory=dict)  # study id -> members
    uploads: dict[str, str] = field(default_factory=dict)  # dataset id -> sha256 sent
    requests: Counter[str] = field(default_factory=Counter)  # final status per route
    retries: Counter[str] = field(default_factory=Counter)  # why a request was sent again
    replays: int = 0  # submits answered "Idempotent-Replayed"
    trace_reads: int = 0
    trace_violations: list[str] = field(default_factory=list)
    samples: int = 0
    sample_failures: int = 0  # the store was down for the sampler
    quota_violations: list[str] = field(default_factory=list)
    history: History = field(default_factory=History)  # what the clients saw, over time

    def count(self, counter: str, key: str) -> None:
        with self.lock:
            getattr(self, counter)[key] += 1


class RetryingClient:
    """One team's HTTP client over every API process, retrying through faults.

    ``request`` tries the processes in turn, sleeping a little between rounds, until an
    answer that is not worth retrying comes, or ``patience_s`` passes, or ``stop`` is set
    (then ``None``: the soak is over, and a retried submit's outcome is left to the checks).
    """

    def __init__(
        self,
        bases: list[str],
        key: str,
        ledger: Ledger,
        patience_s: float,
        stop: threading.Event,
    ):
        self.bases, self.ledger, self.patience_s, self.stop = bases, ledger, patience_s, stop
        self.http = httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=20)
        self.turn = random.randrange(len(bases))

    def request(
        self, route: str, method: str, path: str, body: Callable[[], Any] | None = None, **kw: Any
    ) -> httpx.Response | None:
        """``body()`` makes the content afresh for each try (a stream is read only once)."""
        deadline = time.monotonic() + self.patience_s
        while True:
            base = self.bases[self.turn % len(self.bases)]
            if body is not None:
                kw["content"] = body()
            try:
                r = self.http.request(method, base + path, **kw)
            except httpx.TransportError as exc:
                why = type(exc).__name__
                self.turn += 1  # this process may be down: the other one next
            else:
                if r.status_code not in _RETRY_STATUSES:
                    self.ledger.count("requests", f"{route} {r.status_code}")
                    return r
                why = str(r.status_code)
            self.ledger.count("retries", f"{route} {why}")
            if time.monotonic() > deadline or self.stop.wait(0.2 + 0.3 * random.random()):
                self.ledger.count("requests", f"{route} gave up")
                return None

    def close(self) -> None:
        self.http.close()


def job_spec(rng: random.Random, n: int, long_every: int, scale: float) -> dict[str, Any]:
    """A small job (seconds), or every ``long_every``-th a longer one that crosses several
    checkpoints (every 25 iterations), so that kills and preemption interrupt it between
    two of them; ``scale`` shrinks both (iterations and inner steps)."""
    seed = rng.randrange(3)  # few distinct specs: their references are computed once each
    if n % long_every == 0:
        return tiny_spec(iterations=int(300 * scale), steps=int(600 * scale), name=f"long-{n}",
                         seed=seed)  # fmt: skip
    return tiny_spec(iterations=int(60 * scale), steps=int(300 * scale), name=f"small-{n}",
                     seed=seed)  # fmt: skip


def _accept(ledger: Ledger, key: str, r: httpx.Response | None) -> None:
    """Book a submit's outcome: the job it was answered with, or the key never answered."""
    with ledger.lock:
        if r is not None and r.status_code == 201:
            ledger.accepted[r.json()["id"]] = key
            if r.headers.get("idempotent-replayed") == "true":
                ledger.replays += 1  # an answer was lost, and the retry found the job
        else:
            ledger.submits_given_up.append(key)


def submitter(
    client: RetryingClient,
    team: str,
    stop: threading.Event,
    rng: random.Random,
    every_s: float,
    scale: float,
) -> None:
    """Submit a job every ``every_s`` seconds; the queued quota's 429 makes it wait."""
    ledger, n = client.ledger, 0
    while not stop.is_set():
        n += 1
        key = f"chaos-{team}-{n}-{uuid.uuid4().hex[:8]}"
        spec = job_spec(rng, n, long_every=4, scale=scale)
        r = client.request(
            "POST /v1/jobs", "POST", "/v1/jobs", json=spec, headers={"Idempotency-Key": key}
        )
        _accept(ledger, key, r)
        stop.wait(every_s * (0.5 + rng.random()))


def study_creator(
    client: RetryingClient, stop: threading.Event, rng: random.Random, every_s: float, scale: float
) -> None:
    """Create a two- or three-member study (a seed grid) every ``every_s`` seconds."""
    n = 0
    while not stop.wait(every_s * (0.5 + rng.random())):
        n += 1
        seeds = list(range(rng.choice([2, 3])))
        base = tiny_spec(iterations=int(40 * scale), steps=int(300 * scale))
        body = {"name": f"chaos-study-{n}", "base": base, "grid": {"seed": seeds}}
        r = client.request("POST /v1/studies", "POST", "/v1/studies", json=body)
        if r is not None and r.status_code == 201:
            with client.ledger.lock:
                client.ledger.studies[r.json()["id"]] = len(seeds)


def dataset_bytes(seed: int, rows: int) -> bytes:
    """A classification data set of ``rows`` training rows as ``.npz`` (several chunks)."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(32, 4))

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.normal(size=(n, 32))
        return x, np.argmax(x @ w, axis=1).astype(np.int64)

    (xt, yt), (xv, yv), (xs, ys) = split(rows), split(400), split(400)
    buf = io.BytesIO()
    np.savez(buf, x_train=xt, y_train=yt, x_val=xv, y_val=yv, x_test=xs, y_test=ys)
    return buf.getvalue()


def dataset_job(dataset_id: str) -> dict[str, Any]:
    """A short feature_regularization job on an uploaded data set."""
    from tests.support import job_specs

    spec = job_specs(dataset_id)["feature_regularization"]
    spec["outer"]["iterations"] = 8
    return spec


class Uploader:
    """Uploads a data set every ``every_s`` seconds, and one slowly when asked to (so that a
    PostgreSQL restart can land while its body is still arriving), then a job on each."""

    def __init__(self, client: RetryingClient, rng: random.Random, rows: int):
        self.client, self.rng, self.rows = client, rng, rows
        self.slow_wanted = threading.Event()
        self.streaming = threading.Event()  # the slow upload's body has started
        self.slow_done = threading.Event()
        self.slow_stored = False  # the slow upload came through, on a retry if need be

    def run(self, stop: threading.Event, every_s: float) -> None:
        while not stop.is_set():
            due = time.monotonic() + every_s * (0.5 + self.rng.random())
            # a slow upload asked for, or the next one due, or the end: whichever comes first
            while not (slow := self.slow_wanted.wait(0.25)) and not stop.is_set():
                if time.monotonic() > due:
                    break
            if stop.is_set():
                break
            self.slow_wanted.clear()
            stored = self.upload(slow=slow)
            if slow:
                self.slow_stored = stored
                self.slow_done.set()

    def upload(self, *, slow: bool) -> bool:
        """Upload a new data set and submit a job on it; whether the upload was stored."""
        data = dataset_bytes(self.rng.randrange(1 << 30), self.rows)
        sha = hashlib.sha256(data).hexdigest()
        first = [True]

        def body() -> bytes | Iterator[bytes]:
            if not slow or not first[0]:
                return data  # a retry sends it at full speed
            first[0] = False
            return self._trickle(data)

        r = self.client.request(
            "POST /v1/datasets", "POST", "/v1/datasets", body=body,
            params={"name": f"chaos-{sha[:8]}"},
            headers={"Content-Type": "application/octet-stream"},
        )  # fmt: skip
        if r is None or r.status_code != 201:
            return False
        dataset_id = r.json()["id"]
        with self.client.ledger.lock:
            self.client.ledger.uploads[dataset_id] = sha
        key = f"chaos-dataset-{dataset_id}"
        r = self.client.request("POST /v1/jobs", "POST", "/v1/jobs", json=dataset_job(dataset_id),
                                headers={"Idempotency-Key": key})  # fmt: skip
        _accept(self.client.ledger, key, r)
        return True

    def _trickle(self, data: bytes) -> Iterator[bytes]:
        """The body in 64 pieces over about three seconds."""
        piece = -(-len(data) // 64)
        for i in range(0, len(data), piece):
            yield data[i : i + piece]
            self.streaming.set()
            time.sleep(3.0 / 64)


def poller(client: RetryingClient, stop: threading.Event, rng: random.Random) -> None:
    """The dashboard's reads: the job list, a job and its trace, the studies and one study.

    Every trace read must be iterations ``1..n`` in order, with no gap and no repeat, even
    while a resumed job rewrites the points past its checkpoint. The jobs' states and the
    trace values go into the ledger's history, with when each request was sent and answered.
    """
    ledger, history = client.ledger, client.ledger.history

    def get(route: str, path: str, **kw: Any) -> Any:
        t0 = time.monotonic()
        r = client.request(route, "GET", path, **kw)
        if r is None or r.status_code != 200:
            return None
        return t0, time.monotonic(), r.json()

    while not stop.wait(0.3 + 0.4 * rng.random()):
        page = get("GET /v1/jobs", "/v1/jobs", params={"limit": 20})
        jobs = page[2]["data"] if page else []
        if page:
            history.jobs(page[0], page[1], jobs)
        if jobs:
            job_id = rng.choice(jobs)["id"]
            if one := get("GET /v1/jobs/{id}", f"/v1/jobs/{job_id}"):
                history.jobs(one[0], one[1], [one[2]])
            trace = get("GET /v1/jobs/{id}/trace", f"/v1/jobs/{job_id}/trace",
                        params={"fields": "outer_loss"})  # fmt: skip
            if trace:
                its = trace[2]["iteration"]
                history.trace(job_id, its, trace[2]["outer_loss"])
                with ledger.lock:
                    ledger.trace_reads += 1
                    if its != list(range(1, len(its) + 1)):
                        ledger.trace_violations.append(f"job {job_id} trace read {its[:5]}...")
        if rng.random() < 0.5:
            r = client.request("GET /v1/studies", "GET", "/v1/studies", params={"limit": 10})
            studies = r.json()["data"] if r is not None and r.status_code == 200 else []
            if studies:
                sid = rng.choice(studies)["id"]
                client.request("GET /v1/studies/{id}", "GET", f"/v1/studies/{sid}")
        if rng.random() < 0.2:
            client.request("GET /v1/pool", "GET", "/v1/pool")


def sampler(
    url: str,
    ledger: Ledger,
    stop: threading.Event,
    limits: dict[str, int],
    max_queued: int,
    every_s: float = 0.5,
) -> None:
    """Sample each team's queued and running jobs straight from the store.

    Invariants: running jobs never above the team's running limit (``limits``: team name
    -> ``max_running_cpu``); queued jobs never above the queued quota plus that limit (a
    submit is refused at the quota, but jobs taken back from workers, by a lost lease or a
    preemption, return to the queue without asking).
    """
    from sqlalchemy import func, select

    from jobs.status import JobStatus
    from jobs.store.db import make_engine
    from jobs.store.models import Job, Team

    engine = make_engine(url, pool_size=1)
    q = (
        select(Team.name, Job.status, func.count())
        .join(Job, Job.team_id == Team.id)
        .where(Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]))
        .group_by(Team.name, Job.status)
    )
    try:
        while not stop.wait(every_s):
            try:
                with engine.connect() as conn:
                    rows = conn.execute(q).all()
            except Exception:  # the store is restarting: nothing to sample now
                ledger.sample_failures += 1
                continue
            counts = {(team, status): n for team, status, n in rows}
            ledger.history.sample(time.monotonic(), {
                t: (counts.get((t, JobStatus.RUNNING), 0), counts.get((t, JobStatus.QUEUED), 0))
                for t in limits})  # fmt: skip
            with ledger.lock:
                ledger.samples += 1
                for team, limit in limits.items():
                    running = counts.get((team, JobStatus.RUNNING), 0)
                    queued = counts.get((team, JobStatus.QUEUED), 0)
                    if running > limit:
                        ledger.quota_violations.append(f"{team}: {running} running > {limit}")
                    if queued > max_queued + limit:
                        ledger.quota_violations.append(
                            f"{team}: {queued} queued > {max_queued} + {limit}"
                        )
    finally:
        engine.dispose()
