"""A chaos soak: faults pile up on a running service, and afterwards nothing is lost.

    .venv/bin/python -m benchmarks.service.chaos [--duration 540] [--seed 17] [--worker-kills 20]
        [--redis-restarts 5] [--pg-restarts 3] [--api-kills 3]
    .venv/bin/python -m benchmarks.service.chaos --ci    # the short version the test suite runs

Starts, on loopback only, a PostgreSQL cluster and a Redis server of its own (free ports,
a temporary directory), 3 ``celery worker --pool solo`` processes and 2 API processes
(uvicorn). Two teams of different weights and running limits (set with ``PATCH
/v1/teams``) submit a mix of jobs (small ones of seconds, longer ones that cross several
checkpoints so that preemption and resume happen), create studies and upload data sets,
while dashboard pollers read job lists, traces and studies, and a sampler reads each team's
queued and running counts from the store. Meanwhile, on a schedule drawn from ``--seed``:
worker SIGKILLs (the worker is started again, as a supervisor would), Redis restarts with
and without its append-only file, PostgreSQL restarts (the first while a data set upload
is arriving) and API SIGKILLs (restarted; clients retry on the other process, submits with
their ``Idempotency-Key``).

When the faults are over the load stops, every job is waited for, and the checks of
``benchmarks.service._chaos_checks`` run: every job ended and succeeded; nothing lost or doubled;
per job a trace of iterations ``1..n`` without gaps or repeats; a sample of jobs bit for bit
equal to the same spec run uninterrupted in this process; every data set whole, hashing to
its name, no orphans; no job left ``running`` without a live worker; and the quota samples.
Then the checks over the whole history (``benchmarks.service._chaos_history``): no client was
shown a job leave a terminal state or its attempts go down; every worker claim in
``job_events`` took a queued job with the next attempt, one holder at a time; no trace point
read with two values; running shares within a bound of the weights while both teams were
backlogged. Worker kills wait (up to 30 s) for a worker that holds a job; an idle kill is a
violation. Jobs on uploaded data sets join the bit-identical sample.
Prints the faults by kind, the checks and their violations, writes JSON to ``--out``, and
exits 1 on any violation (or a fault that could not be injected).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from benchmarks.service import _chaos_checks as checks
from benchmarks.service import _chaos_clients as clients
from benchmarks.service import _chaos_history as history

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[2]
TEAMS = {
    "alpha": {"weight": 3.0, "max_running_cpu": 3},
    "beta": {"weight": 1.0, "max_running_cpu": 2},
}
KINDS = {
    "worker_kill": "worker SIGKILL (restarted)",
    "redis_restart_aof": "Redis restart, append-only file on",
    "redis_restart_no_aof": "Redis restart, no persistence",
    "pg_restart_upload": "PostgreSQL restart during an upload",
    "pg_restart": "PostgreSQL restart",
    "api_kill": "API SIGKILL (restarted)",
}


@dataclass(frozen=True)
class Fault:
    at: float  # seconds into the fault phase
    kind: str


def schedule(args: argparse.Namespace, rng: random.Random) -> list[Fault]:
    """The faults at seeded random times from 10 % of the phase to ``--last-fault``, in order.

    Redis restarts alternate the persistence of the server they stop (both kinds happen
    from two restarts on); the first PostgreSQL restart lands during an upload.
    """
    kinds = ["worker_kill"] * args.worker_kills + ["api_kill"] * args.api_kills
    kinds += ["pg_restart"] * args.pg_restarts + ["redis"] * args.redis_restarts
    times = sorted(rng.uniform(0.1, args.last_fault) * args.duration for _ in kinds)
    rng.shuffle(kinds)
    faults, redis_n, pg_n = [], 0, 0
    first_aof = rng.random() < 0.5
    for at, kind in zip(times, kinds, strict=True):
        if kind == "redis":
            kind = (
                "redis_restart_aof" if (redis_n % 2 == 0) == first_aof else "redis_restart_no_aof"
            )
            redis_n += 1
        elif kind == "pg_restart":
            kind = "pg_restart_upload" if pg_n == 0 else kind
            pg_n += 1
        faults.append(Fault(round(at, 2), kind))
    return faults


class Stack:
    """The servers and processes of one soak, in a temporary directory of its own."""

    def __init__(self, args: argparse.Namespace, faults: list[Fault]):
        from tests.support import (
            KEY_SECRET,  # the secret tests.factories hashes keys under
            Api,
            CeleryWorker,
            PostgresServer,
            RedisServer,
        )

        self.dir = Path(tempfile.mkdtemp(prefix="bilevel-chaos-"))
        self.pg = PostgresServer()
        redis_kinds = [f.kind for f in faults if f.kind.startswith("redis")]
        # the Redis server runs as the first restart's kind says; each restart switches
        self.redis_modes = [k == "redis_restart_aof" for k in redis_kinds] or [False]
        (self.dir / "redis").mkdir()
        self.redis = RedisServer(self.dir / "redis", appendonly=self.redis_modes[0])
        self.url = self.pg.url("chaos")
        self.env = {
            "DATABASE_URL": self.url,
            "BROKER_URL": self.redis.url,
            "BILEVEL_KEY_SECRET": KEY_SECRET,
            "BILEVEL_QUEUE_PREFIX": f"chaos{uuid.uuid4().hex[:6]}",
            # a lost worker costs seconds; a live one on a loaded machine keeps its lease
            "BILEVEL_LEASE_S": "4",
            "BILEVEL_REAP_EVERY_S": "0.5",
            "BILEVEL_REQUEUE_QUEUED_AFTER_S": "3",
            "BILEVEL_FLUSH_EVERY_S": "0.2",
            "BILEVEL_CHECKPOINT_EVERY_N": "25",
            "BILEVEL_CHECKPOINT_EVERY_S": "1",
            "BILEVEL_TORCH_THREADS": "1",
            "BILEVEL_STORE_PATIENCE_S": "60",
            # twenty kills may land on one job: attempts must outlast them
            "BILEVEL_MAX_ATTEMPTS": "30",
            "BILEVEL_PREEMPTION": "true",
            "BILEVEL_PREEMPT_MIN_RUN_S": "1",
            "BILEVEL_MAX_QUEUED_JOBS": str(args.max_queued),
            "BILEVEL_QUOTA_RETRY_AFTER_S": "1",
            "BILEVEL_RATE_LIMIT_PER_S": "0",  # one key per team, several clients on it
        }
        self.workers = [CeleryWorker(self.env, self.dir, f"w{i + 1}") for i in range(3)]
        self.apis = [Api(self.env, self.dir, f"api{i + 1}") for i in range(2)]
        self.engine: Any = None

    def start(self) -> None:
        from jobs.store.db import make_engine, make_session_factory
        from migrations import upgrade

        self.pg.init().start()
        self.pg.execute("CREATE DATABASE chaos")
        upgrade(self.url)
        self.redis.start()
        self.engine = make_engine(self.url, pool_size=2)
        self.sessions = make_session_factory(self.engine)
        for p in [*self.workers, *self.apis]:
            p.launch()  # side by side: each imports torch or the API (seconds)
        for p in [*self.apis, *self.workers]:
            p.wait_ready(180)

    @property
    def bases(self) -> list[str]:
        return [a.url for a in self.apis]

    def close(self, keep: bool) -> None:
        for p in [*self.apis, *self.workers]:
            p.kill()
        if self.engine is not None:
            self.engine.dispose()
        self.redis.stop(kill=True)
        self.pg.destroy()
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def holders(self) -> set[str]:
        """``host:pid`` of the workers holding a running job's lease now."""
        from sqlalchemy import select

        from jobs.status import JobStatus
        from jobs.store.models import Job

        try:
            with self.sessions() as s:
                q = select(Job.worker).where(Job.status == JobStatus.RUNNING)
                return {w for w in s.scalars(q) if w}
        except Exception:
            return set()


class Injector:
    """Injects the scheduled faults, one after another, and logs each."""

    def __init__(
        self, stack: Stack, uploader: clients.Uploader, rng: random.Random, patience_s: float
    ):
        self.stack, self.uploader, self.rng, self.patience_s = stack, uploader, rng, patience_s
        self.done: Counter[str] = Counter()
        self.log: list[dict[str, Any]] = []
        self.redis_restarts = 0
        self.mid_job_wait_s = 30.0
        self.kills: Counter[str] = Counter()  # worker kills: mid-job or idle
        self.actions = {
            "worker_kill": self.worker_kill,
            "redis_restart_aof": self.redis_restart,
            "redis_restart_no_aof": self.redis_restart,
            "pg_restart_upload": self.pg_restart_upload,
            "pg_restart": self.pg_restart,
            "api_kill": self.api_kill,
        }

    def run(self, faults: list[Fault], t0: float) -> None:
        for f in faults:
            time.sleep(max(0.0, t0 + f.at - time.monotonic()))
            started = time.monotonic()
            detail = self.actions[f.kind](f)
            self.done[f.kind] += 1
            entry = {"at_s": round(started - t0, 1), "kind": f.kind, "detail": detail,
                     "took_s": round(time.monotonic() - started, 1)}  # fmt: skip
            self.log.append(entry)
            print(f"  {entry['at_s']:7.1f} s  {f.kind:22s} {detail}", flush=True)

    def worker_kill(self, _: Fault) -> str:
        """SIGKILL a ready worker that holds a job, waiting up to ``mid_job_wait_s`` for one
        (a kill of an idle worker tests little: it has no lease to lose); one stays ready
        meanwhile (a restarted worker imports torch again: tens of seconds on a loaded
        machine, and a pool of none would only stall the soak)."""
        t0 = time.monotonic()
        while True:
            ready = [w for w in self.stack.workers if w.ready()]
            if len(ready) >= 2:
                holding = self.stack.holders()
                busy = [w for w in ready if w.ident in holding]
                if busy or time.monotonic() - t0 > self.mid_job_wait_s:
                    break
            elif time.monotonic() - t0 > 180:
                raise RuntimeError(f"workers not ready for 180 s: {self.stack.dir}")
            time.sleep(0.2)
        waited = time.monotonic() - t0
        victim = self.rng.choice(busy or ready)
        victim.kill()
        victim.launch()  # a supervisor's restart
        self.kills["mid-job" if busy else "idle"] += 1
        late = f", {waited:.0f} s late (waiting for a worker with a job)" if waited >= 1 else ""
        return f"{victim.name} {'mid-job' if busy else 'idle'}{late}"

    def redis_restart(self, f: Fault) -> str:
        modes = self.stack.redis_modes
        self.redis_restarts += 1
        # the server comes back as the next restart's kind wants it
        self.stack.redis.appendonly = modes[min(self.redis_restarts, len(modes) - 1)]
        self.stack.redis.restart(down_s=1.0)
        return f"down 1.0 s, back with appendonly={self.stack.redis.appendonly}"

    def pg_restart(self, _: Fault) -> str:
        self.stack.pg.restart(down_s=2.0)
        return "down 2.0 s"

    def pg_restart_upload(self, _: Fault) -> str:
        up = self.uploader
        up.streaming.clear()
        up.slow_done.clear()
        up.slow_wanted.set()
        arriving = up.streaming.wait(60)
        time.sleep(0.3)
        # down for longer than the body takes to arrive: the API stores it into a dead store
        self.stack.pg.restart(down_s=3.5)
        # the upload's retries end before the load does: the checks see how it came out
        stored = up.slow_done.wait(self.patience_s) and up.slow_stored
        return (f"upload {'arriving' if arriving else 'NOT in flight (the uploader was busy)'}"
                f", then {'stored' if stored else 'NOT stored'} on retry")  # fmt: skip

    def api_kill(self, _: Fault) -> str:
        api = self.stack.apis[self.done["api_kill"] % len(self.stack.apis)]  # each in turn
        api.kill()
        api.start(timeout=120)
        return api.name


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="benchmarks.service.chaos", description=__doc__.splitlines()[0]
    )
    p.add_argument("--ci", action="store_true",
                   help="the short version: every fault kind, fewer of each (< 2 min)")  # fmt: skip
    p.add_argument("--seed", type=int, default=17)
    p.add_argument("--duration", type=float, help="seconds of faults under load")
    p.add_argument("--worker-kills", type=int)
    p.add_argument("--redis-restarts", type=int)
    p.add_argument("--pg-restarts", type=int)
    p.add_argument("--api-kills", type=int)
    p.add_argument("--reference-sample", type=int, help="jobs compared with an uninterrupted run")
    p.add_argument("--drain-timeout", type=float, help="seconds for every job to end afterwards")
    p.add_argument("--max-queued", type=int, help="each team's queued quota")
    p.add_argument("--scale", type=float, help="the jobs' iterations and inner steps, x")
    p.add_argument("--last-fault", type=float, help="the latest fault, a fraction of --duration")
    p.add_argument("--out", type=Path, default=ROOT / "out" / "chaos.json")
    p.add_argument("--keep", action="store_true", help="keep the logs' directory")
    args = p.parse_args(argv)
    full = {"duration": 540.0, "worker_kills": 20, "redis_restarts": 5, "pg_restarts": 3,
            "api_kills": 3, "reference_sample": 12, "drain_timeout": 300.0, "submit_every": 2.0,
            "study_every": 20.0, "upload_every": 40.0, "patience": 120.0, "max_queued": 8,
            "scale": 0.5,
            "last_fault": 0.9}  # fmt: skip
    # short: the faults end by 70 % of the phase, so that restarted workers are back (each
    # imports torch: tens of seconds on a loaded machine) before the drain
    ci = {"duration": 30.0, "worker_kills": 2, "redis_restarts": 2, "pg_restarts": 1,
          "api_kills": 1, "reference_sample": 2, "drain_timeout": 120.0, "submit_every": 3.0,
          "study_every": 12.0, "upload_every": 60.0, "patience": 60.0, "max_queued": 5,
          "scale": 0.4,
          "last_fault": 0.7}  # fmt: skip
    for k, v in (ci if args.ci else full).items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)
    if min(args.worker_kills, args.redis_restarts, args.pg_restarts, args.api_kills) < 0:
        p.error("fault counts must be >= 0")
    return args


def _configure_teams(stack: Stack) -> dict[str, str]:
    """A key per team, and each team's weight and running limit set over REST."""
    from tests.support import team_with_key

    keys = {name: team_with_key(stack.sessions, name)[1] for name in TEAMS}
    operator = team_with_key(stack.sessions, "ops", scope="operator")[1]
    with httpx.Client(headers={"Authorization": f"Bearer {operator}"}, timeout=30) as http:
        for name, policy in TEAMS.items():
            r = http.patch(f"{stack.bases[0]}/v1/teams/{name}", json=policy)
            if r.status_code != 200:
                raise RuntimeError(f"PATCH /v1/teams/{name}: {r.status_code} {r.text}")
    return keys


def _load(
    stack: Stack, args: argparse.Namespace, keys: dict[str, str], ledger: clients.Ledger
) -> tuple[list[threading.Thread], threading.Event, clients.Uploader, list[Any]]:
    stop = threading.Event()
    rngs = [random.Random(args.seed * 1000 + i) for i in range(8)]
    made = {n: clients.RetryingClient(stack.bases, k, ledger, args.patience, stop)
            for n, k in keys.items()}  # fmt: skip
    extra = [clients.RetryingClient(stack.bases, keys[n], ledger, args.patience, stop)
             for n in ("alpha", "beta", "beta", "alpha")]  # fmt: skip
    uploader = clients.Uploader(extra[2], rngs[4], rows=20_000)
    targets: list[tuple[Any, tuple[Any, ...]]] = [
        (clients.submitter, (made["alpha"], "alpha", stop, rngs[0], args.submit_every,
                             args.scale)),
        (clients.submitter, (made["beta"], "beta", stop, rngs[1], args.submit_every * 1.5,
                             args.scale)),
        (clients.study_creator, (extra[3], stop, rngs[2], args.study_every, args.scale)),
        (clients.poller, (extra[0], stop, rngs[3])),
        (clients.poller, (extra[1], stop, rngs[5])),
        (uploader.run, (stop, args.upload_every)),
        (clients.sampler, (stack.url, ledger, stop,
                           {n: int(t["max_running_cpu"]) for n, t in TEAMS.items()},
                           args.max_queued)),
    ]  # fmt: skip
    threads = [threading.Thread(target=f, args=a, daemon=True) for f, a in targets]
    for t in threads:
        t.start()
    return threads, stop, uploader, [*made.values(), *extra]


def _history_checks(
    stack: Stack, ledger: clients.Ledger, injector: Injector, results: dict[str, Any]
) -> tuple[tuple[int, list[str]], dict[str, Any]]:
    """The checks over the whole history (``benchmarks.service._chaos_history``), added to
    ``results``; returns the fair-share check and its figures."""
    h = ledger.history
    with stack.sessions() as s:
        events = history.claim_events(s)
        stored = history.stored_values(s, {job for job, _ in h.values})
    kills = injector.kills
    idle = [f"{kills['idle']} of {sum(kills.values())} worker kills found no worker holding a job"]
    results.update({
        "history: no job leaves a terminal state": history.terminal_final(h.seen),
        "history: a job's attempts only grow": history.attempts_grow(h.seen),
        "history: claims exclusive, attempts +1, none after end": history.claims_exclusive(events),
        "history: trace values never rewritten": history.trace_values(h.values, stored),
        "worker kills that hit a running job": (kills["mid-job"], idle if kills["idle"] else []),
    })  # fmt: skip
    weights = {n: float(t["weight"]) for n, t in TEAMS.items()}
    limits = {n: int(t["max_running_cpu"]) for n, t in TEAMS.items()}
    n, bad, figures = history.fair_shares(h.shares, weights, limits, bound=0.1)
    # every sample, for a look at how the shares moved: (seconds, {team: [running, queued]})
    figures["samples"] = [(round(t, 2), c) for t, c in h.shares]
    return (n, bad), figures


def _print(report: dict[str, Any]) -> None:
    print(f"\nchaos soak, seed {report['seed']}, {report['date']}: {report['wall_s']:.0f} s "
          f"in all: stack up {report['stack_up_s']:.0f} s, faults under load "
          f"{report['fault_phase_s']:.0f} s, drain {report['drain_s']:.0f} s, checks "
          f"{report['checks_s']:.0f} s")  # fmt: skip
    print(f"\n{'fault':40s} {'planned':>8s} {'injected':>9s}")
    for kind, label in KINDS.items():
        f = report["faults"].get(kind, {"planned": 0, "injected": 0})
        print(f"{label:40s} {f['planned']:8d} {f['injected']:9d}")
    print(f"\n{'check':48s} {'checked':>9s} {'violations':>11s}")
    for name, c in report["checks"].items():
        print(f"{name:48s} {c['checked']:9d} {len(c['violations']):11d}")
        for v in c["violations"][:5]:
            print(f"    {v}")
    a = report["activity"]
    print(f"\njobs {a['jobs_by_status']}; {a['accepted_submits']} submits accepted, "
          f"{a['submits_given_up']} given up, {a['submits_replayed']} replayed after a lost "
          f"answer; {a['studies']} studies, {a['uploads']} uploads; "
          f"{a['client_retries']} client retries; stored without an answer (no idempotency "
          f"key): {a['studies_stored_unanswered']} studies, {a['datasets_stored_unanswered']} "
          "data sets")  # fmt: skip
    print(f"taken off a worker and requeued: {a['requeued_by_reason']}; "
          f"{a['jobs_run_more_than_once']} jobs ran more than once")  # fmt: skip
    shares = {k: v for k, v in report["fair_shares"].items() if k != "samples"}
    print(f"fair shares while both teams were backlogged: {shares}")
    print(f"violations: {report['violations']}")


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    rng = random.Random(args.seed)
    faults = schedule(args, rng)
    stack = Stack(args, faults)
    t_start = time.monotonic()
    ledger = clients.Ledger()
    report: dict[str, Any] = {"benchmark": "chaos", "seed": args.seed, "ci": args.ci,
                              "date": datetime.now(UTC).isoformat(timespec="seconds")}  # fmt: skip
    ok = False
    try:
        stack.start()
        keys = _configure_teams(stack)
        report["stack_up_s"] = round(time.monotonic() - t_start, 1)
        print(f"stack up in {time.monotonic() - t_start:.0f} s (logs in {stack.dir}); "
              f"{len(faults)} faults over {args.duration:.0f} s", flush=True)  # fmt: skip
        threads, stop, uploader, made = _load(stack, args, keys, ledger)
        injector = Injector(stack, uploader, random.Random(args.seed + 1), args.patience)
        t0 = time.monotonic()
        injector.run(faults, t0)
        time.sleep(max(0.0, t0 + args.duration - time.monotonic()))
        stop.set()
        for t in threads:
            t.join(args.patience + 30)
        for c in made:
            c.close()
        report["fault_phase_s"] = round(time.monotonic() - t0, 1)
        for w in stack.workers:  # every worker serves the drain
            if not w.alive():
                w.launch()
        t_drain = time.monotonic()
        counts = checks.wait_terminal(stack.sessions, args.drain_timeout)
        report["drain_s"] = round(time.monotonic() - t_drain, 1)
        t_checks = time.monotonic()
        results = {
            "every job ended, and succeeded": checks.terminal(stack.sessions),
            "accepted submits and studies, none lost or doubled": checks.accepted(
                stack.sessions, ledger
            ),
            "trace points: 1..n, no gap, no duplicate": checks.traces(stack.sessions),
            "trace reads by the pollers: 1..n": (ledger.trace_reads, ledger.trace_violations),
            "bit-identical to an uninterrupted run": checks.references(
                stack.sessions, args.reference_sample, random.Random(args.seed)
            ),
            "data set blobs whole, hashes verify, no orphan": checks.datasets(
                stack.sessions, ledger
            ),
            "no lease left behind (running w/o live worker)": checks.leases(
                stack.sessions, {w.ident for w in stack.workers if w.alive()}
            ),
            "quota samples (running limit, queued quota)": (
                ledger.samples,
                ledger.quota_violations,
            ),
        }
        shares, report["fair_shares"] = _history_checks(stack, ledger, injector, results)
        results["fair shares under faults (Jain of running/fair >= 0.9)"] = shares
        report["checks_s"] = round(time.monotonic() - t_checks, 1)
        planned = Counter(f.kind for f in faults)
        report["faults"] = {k: {"planned": planned[k], "injected": injector.done[k]} for k in KINDS}
        missed = [f"{k}: {v['injected']} of {v['planned']}" for k, v in report["faults"].items()
                  if v["injected"] != v["planned"]]  # fmt: skip
        results["faults injected as planned"] = (len(faults), missed)
        report["checks"] = {k: {"checked": n, "violations": v} for k, (n, v) in results.items()}
        report["violations"] = sum(len(v) for _, v in results.values())
        report["activity"] = {
            "jobs_by_status": {str(k): v for k, v in counts.items()},
            "accepted_submits": len(ledger.accepted),
            "submits_given_up": len(ledger.submits_given_up),
            "studies": len(ledger.studies),
            "uploads": len(ledger.uploads),
            "client_retries": sum(ledger.retries.values()),
            "submits_replayed": ledger.replays,
            "retries_by_route": dict(ledger.retries),
            "answers_by_route": dict(ledger.requests),
            "sampler_store_down": ledger.sample_failures,
            **checks.unanswered(stack.sessions, ledger),
            **checks.interruptions(stack.sessions),
        }
        report["fault_log"] = injector.log
        report["wall_s"] = round(time.monotonic() - t_start, 1)
        report["config"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        report["machine"] = {"cpus": os.cpu_count(), "loadavg": os.getloadavg()}
        _print(report)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}")
        ok = report["violations"] == 0
        return 0 if ok else 1
    finally:
        stack.close(keep=args.keep or not ok)


if __name__ == "__main__":
    raise SystemExit(main())
