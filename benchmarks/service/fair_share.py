"""A synthetic day on the shared pool, scheduled by the claim's own selection function.

    .venv/bin/python -m benchmarks.service.fair_share [--workers 40 --hours 24 --seed 0]

Several teams with skewed arrival rates, job lengths and bursts submit to a pool of
``--workers`` workers; every free worker takes the job :func:`jobs.fairshare.pick_next`
picks, and (with preemption) every ``--check-s`` the reaper's pass asks the jobs
:func:`jobs.fairshare.preemption_victims` names to stop at their next checkpoint (every
``--checkpoint-s`` of running time; no work is lost, as a resumed job continues exactly).
No database, no workers: the same functions the store's claim and the reaper call.

Printed per team, with and without preemption: its share of worker time against its
weight and against its *entitlement* (weighted max-min fair share of the workers given what
it asked for at each moment: a team that asks for less than its weight is entitled to what
it asked), Jain's fairness index of share / entitlement, the pool's utilisation while any
team had queued work, and the queue-wait percentiles.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import platform
import random
import statistics
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from jobs.fairshare import Candidate, Priority, Running, TeamLoad, pick_next, preemption_victims

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class TeamSpec:
    """A synthetic team: weight, Poisson arrivals per hour, lognormal job length, bursts."""

    name: str
    weight: float
    per_hour: float
    median_s: float
    sigma: float = 0.8
    bursts: tuple[tuple[float, int], ...] = ()  # (hour, jobs submitted at once)


TEAMS = (
    TeamSpec("vision", 2.0, per_hour=30, median_s=1800),
    TeamSpec("nlp", 1.0, per_hour=9, median_s=3600, sigma=1.0),
    TeamSpec("rl", 1.0, per_hour=2, median_s=900, bursts=((3, 150), (11, 150), (17, 200))),
    TeamSpec("theory", 1.0, per_hour=3, median_s=300, sigma=0.5),  # the light team
)


@dataclass
class Job:
    id: int
    team: str
    submitted: float
    length: float
    done: float = 0.0  # running time completed (kept across preemptions: exact resume)
    started: float | None = None  # first start
    since: float = 0.0  # this attempt's start
    preempt_at: float | None = None


def _arrivals(teams: tuple[TeamSpec, ...], hours: float, rng: random.Random) -> list[Job]:
    jobs: list[Job] = []
    ids = itertools.count()
    for t in teams:
        times: list[float] = []
        now = rng.expovariate(t.per_hour / 3600)
        while now < hours * 3600:
            times.append(now)
            now += rng.expovariate(t.per_hour / 3600)
        for hour, n in t.bursts:
            times += [hour * 3600 + i * 0.1 for i in range(n)]
        for at in times:
            length = t.median_s * rng.lognormvariate(0, t.sigma)
            jobs.append(Job(next(ids), t.name, at, length))
    return sorted(jobs, key=lambda j: j.submitted)


def _entitlement(demand: dict[str, int], weights: dict[str, float], workers: int):
    """Weighted max-min fair allocation of ``workers`` given each team's demand."""
    alloc = dict.fromkeys(demand, 0.0)
    left, active = float(workers), {t for t, d in demand.items() if d > 0}
    while active and left > 1e-9:
        wsum = sum(weights[t] for t in active)
        give = {t: left * weights[t] / wsum for t in active}
        full = {t for t in active if alloc[t] + give[t] >= demand[t]}
        if not full:
            for t in active:
                alloc[t] += give[t]
            break
        for t in full:
            left -= demand[t] - alloc[t]
            alloc[t] = float(demand[t])
        active -= full
    return alloc


class _Day:
    """The event loop of one simulated day (arrivals, completions, preemption checks)."""

    def __init__(
        self,
        teams: tuple[TeamSpec, ...],
        workers: int,
        hours: float,
        seed: int,
        preemption: bool,
        check_s: float,
        checkpoint_s: float,
        min_run_s: float,
    ):
        self.teams, self.workers = teams, workers
        self.checkpoint_s, self.min_run_s = checkpoint_s, min_run_s
        self.arrivals = _arrivals(teams, hours, random.Random(seed))
        self.jobs = {j.id: j for j in self.arrivals}
        self.weights = {t.name: t.weight for t in teams}
        self.queues: dict[str, deque[Job]] = {t.name: deque() for t in teams}
        self.running: dict[int, Job] = {}
        self.events: list[tuple[float, int, str, int]] = []  # (time, order, kind, job id)
        self.order = itertools.count()
        for j in self.arrivals:
            self.push(j.submitted, "arrive", j.id)
        if preemption:
            for k in range(int(hours * 3600 / check_s) + 1):
                self.push(k * check_s, "check", -1)
        self.run_time = dict.fromkeys(self.weights, 0.0)
        self.entitled = dict.fromkeys(self.weights, 0.0)
        self.busy_while_queued = self.queued_time = 0.0
        self.preemptions = 0
        self.finish_at: dict[int, float] = {}  # the current attempt's completion time
        self.now = 0.0

    def push(self, at: float, kind: str, job_id: int) -> None:
        heapq.heappush(self.events, (at, next(self.order), kind, job_id))

    def loads(self) -> dict[str, TeamLoad]:
        counts = dict.fromkeys(self.weights, 0)
        for j in self.running.values():
            counts[j.team] += 1
        return {t: TeamLoad(self.weights[t], counts[t], 2**31) for t in self.weights}

    def integrate(self, at: float) -> None:
        """Account the interval [now, at): running time, entitlement, utilisation."""
        dt = at - self.now
        counts = self.loads()
        demand = {t: counts[t].running + len(self.queues[t]) for t in self.weights}
        alloc = _entitlement(demand, self.weights, self.workers)
        for t in self.weights:
            self.run_time[t] += counts[t].running * dt
            self.entitled[t] += alloc[t] * dt
        if any(self.queues.values()):
            self.queued_time += dt
            self.busy_while_queued += len(self.running) / self.workers * dt
        self.now = at

    def fill(self) -> None:
        """Every free worker takes the job the claim's selection picks."""
        while len(self.running) < self.workers:
            heads = [Candidate(q[0].id, t, Priority.NORMAL, T0 + timedelta(seconds=q[0].submitted))
                     for t, q in self.queues.items() if q]  # fmt: skip
            chosen = pick_next(self.loads(), heads)
            if chosen is None:
                return
            job = self.queues[chosen.team].popleft()
            job.started = self.now if job.started is None else job.started
            job.since, job.preempt_at = self.now, None
            self.finish_at[job.id] = self.now + job.length - job.done
            self.running[job.id] = job
            self.push(self.finish_at[job.id], "finish", job.id)

    def finish(self, at: float, job_id: int) -> None:
        if job_id in self.running and self.finish_at.get(job_id) == at:
            del self.running[job_id]  # else a stale completion of a preempted attempt

    def stop(self, at: float, job_id: int) -> None:
        job = self.running.get(job_id)
        if job is None or job.preempt_at != at:
            return
        job.done += at - job.since
        del self.running[job_id]
        self.finish_at.pop(job_id, None)
        # back in the queue at its place: the queue is ordered by submission
        q = self.queues[job.team]
        q.append(job)
        self.queues[job.team] = deque(sorted(q, key=lambda j: j.submitted))
        self.preemptions += 1

    def check(self) -> None:
        """The reaper's pass: one preemption in flight at a time, as in the store."""
        if any(j.preempt_at for j in self.running.values()):
            return
        queued = {t: len(q) for t, q in self.queues.items()}
        running = [Running(j.id, j.team, T0 + timedelta(seconds=j.since))
                   for j in self.running.values()]  # fmt: skip
        victims = preemption_victims(
            self.loads(), queued, running, idle_workers=self.workers - len(self.running),
            started_before=T0 + timedelta(seconds=self.now - self.min_run_s),
        )  # fmt: skip
        for vid in victims:
            job = self.running[vid]
            # it stops at its next checkpoint (every checkpoint_s of running time)
            stop = self.now + (self.checkpoint_s - (self.now - job.since) % self.checkpoint_s)
            if stop < self.finish_at[vid]:
                job.preempt_at = stop
                self.push(stop, "stop", vid)

    def run(self) -> None:
        while self.events:
            at, _, kind, job_id = heapq.heappop(self.events)
            if at > self.now:
                self.integrate(at)
            if kind == "arrive":
                self.queues[self.jobs[job_id].team].append(self.jobs[job_id])
            elif kind == "finish":
                self.finish(at, job_id)
            elif kind == "stop":
                self.stop(at, job_id)
            else:
                self.check()
            self.fill()

    def result(self, preemption: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"preemption": preemption, "preemptions": self.preemptions,
                               "teams": {}}  # fmt: skip
        total_run = sum(self.run_time.values())
        ratios = []
        for t in self.teams:
            waits = [j.started - j.submitted for j in self.arrivals
                     if j.team == t.name and j.started is not None]  # fmt: skip
            ent = self.entitled[t.name]
            ratio = self.run_time[t.name] / ent if ent else 1.0
            ratios.append(ratio)
            q = statistics.quantiles(waits, n=100) if len(waits) > 1 else [0.0] * 99
            out["teams"][t.name] = {
                "weight": t.weight,
                "jobs": len(waits),
                "share": self.run_time[t.name] / total_run,
                "weight_share": t.weight / sum(self.weights.values()),
                "entitled_share": ent / sum(self.entitled.values()),
                "share_over_entitlement": ratio,
                "wait_p50_s": q[49],
                "wait_p95_s": q[94],
                "wait_p99_s": q[98],
            }
        out["jain"] = sum(ratios) ** 2 / (len(ratios) * sum(r * r for r in ratios))
        out["utilisation_while_queued"] = (
            self.busy_while_queued / self.queued_time if self.queued_time else 1.0
        )
        out["median_job_s"] = statistics.median(j.length for j in self.arrivals)
        return out


def simulate(
    teams: tuple[TeamSpec, ...],
    *,
    workers: int,
    hours: float,
    seed: int,
    preemption: bool,
    check_s: float = 10.0,
    checkpoint_s: float = 30.0,
    min_run_s: float = 60.0,
) -> dict[str, Any]:
    """Run one day; returns per-team figures and the pool's."""
    day = _Day(teams, workers, hours, seed, preemption, check_s, checkpoint_s, min_run_s)
    day.run()
    return day.result(preemption)


def _print(res: dict[str, Any]) -> None:
    label = "with preemption" if res["preemption"] else "without preemption"
    print(f"\n{label}: Jain {res['jain']:.4f}, utilisation while queued "
          f"{res['utilisation_while_queued']:.4f}, preemptions {res['preemptions']}, "
          f"median job {res['median_job_s']:.0f} s")  # fmt: skip
    print(f"{'team':<8} {'weight':>6} {'jobs':>5} {'share':>6} {'w.share':>7} {'entitled':>8} "
          f"{'share/ent':>9} {'wait p50':>9} {'p95':>8} {'p99':>8}")  # fmt: skip
    for name, r in res["teams"].items():
        print(f"{name:<8} {r['weight']:>6g} {r['jobs']:>5} {r['share']:>6.3f} "
              f"{r['weight_share']:>7.3f} {r['entitled_share']:>8.3f} "
              f"{r['share_over_entitlement']:>9.3f} {r['wait_p50_s']:>8.0f}s "
              f"{r['wait_p95_s']:>7.0f}s {r['wait_p99_s']:>7.0f}s")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Simulate the day with and without preemption; print the tables, write the JSON."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--workers", type=int, default=40)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check-s", type=float, default=10.0, help="the reaper's period")
    parser.add_argument("--checkpoint-s", type=float, default=30.0)
    parser.add_argument("--min-run-s", type=float, default=60.0, help="preempt_min_run_s")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/fair_share.json"))
    args = parser.parse_args(argv)
    results = [
        simulate(TEAMS, workers=args.workers, hours=args.hours, seed=args.seed,
                 preemption=p, check_s=args.check_s, checkpoint_s=args.checkpoint_s,
                 min_run_s=args.min_run_s)
        for p in (False, True)
    ]  # fmt: skip
    for res in results:
        _print(res)
    meta = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": platform.platform(), "args": {k: str(v) for k, v in vars(args).items()},
            "teams": [vars(t) for t in TEAMS]}  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
