"""The scale benchmark's figures from what its actors recorded, and its plot."""

from __future__ import annotations

import argparse
import os
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["jain_index", "percentile", "plot", "summarise"]

WARMUP_S = 3.0  # samples this soon after the start are left out (workers still starting)


def jain_index(xs: Sequence[float]) -> float:
    """Jain's fairness index ``(sum x)^2 / (n sum x^2)``: 1 when all equal, 1/n at worst."""
    sq = sum(x * x for x in xs)
    return (sum(xs) ** 2 / (len(xs) * sq)) if xs and sq > 0 else 1.0


def percentile(xs: list[float], q: float) -> float | None:
    """The ``q``-th percentile (nearest rank) of ``xs``; ``None`` when empty."""
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s)) - 1))]


def _ms(xs: list[float]) -> dict[str, Any]:
    p = {f"p{q}": percentile(xs, q) for q in (50, 99)}
    return {"n": len(xs), **{k: round(v * 1e3, 2) if v is not None else None for k, v in p.items()},
            "max": round(max(xs) * 1e3, 2) if xs else None}  # fmt: skip


def _fairness(
    samples: list[tuple[float, dict[str, tuple[int, int]]]], weights: dict[str, float], t0: float
) -> dict[str, Any]:
    """Jain's index of running jobs per unit of weight over backlogged teams.

    Time-averaged: each team's mean running count over the samples in which it had queued
    jobs (a team with 0.8 workers' worth of weight alternates 0 and 1), divided by its weight;
    and the mean of each sample's own index, for comparison.
    """
    held: dict[str, list[int]] = {}
    instant = []
    for t, teams in samples:
        if t < t0 + WARMUP_S:
            continue
        backlogged = {k: r for k, (r, q) in teams.items() if q > 0 and k in weights}
        for k, r in backlogged.items():
            held.setdefault(k, []).append(r)
        if len(backlogged) > 1:
            instant.append(jain_index([r / weights[k] for k, r in backlogged.items()]))
    x = {k: statistics.fmean(v) / weights[k] for k, v in held.items() if len(v) >= 3}
    return {"jain_time_averaged": round(jain_index(list(x.values())), 4) if x else None,
            "jain_instant_mean": round(statistics.fmean(instant), 4) if instant else None,
            "teams_backlogged": len(x), "share_per_weight": x}  # fmt: skip


def _by_phase(
    claims: list[tuple[Any, ...]],
    samples: list[tuple[float, dict[str, tuple[int, int]]]],
    teams: int,
) -> dict[str, Any]:
    """Claim latency while at least half the teams had queued jobs, and in the drain after.

    In the drain the claims of the pool fall on the few teams left, whose claims queue for
    their team's lock in turn: a latency of the queue's shape, not of the store's load.
    """
    backlogged = [(at, sum(1 for _, q in t.values() if q > 0)) for at, t in samples]
    drain_at = next((at for at, n in backlogged[1:] if n < teams / 2), None)
    split = {
        "backlogged": [c[2] for c in claims if drain_at is None or c[0] < drain_at],
        "drain": [c[2] for c in claims if drain_at is not None and c[0] >= drain_at],
    }
    return {k: _ms(v) for k, v in split.items()}


def summarise(
    report: dict[str, Any],
    outs: list[dict[str, list[Any]]],
    samples: list[tuple[float, dict[str, tuple[int, int]]]],
    weights: list[float],
    team_ids: list[str],
    args: argparse.Namespace,
) -> None:
    """Fill ``report["summary"]`` (the headline) and ``report["summary_full"]`` (the JSON)."""
    claims = sorted(c for o in outs for c in o["claims"])
    busy = [b for o in outs for b in o["busy"]]
    errors = [e for o in outs for e in o["errors"]]
    txn = [c[2] for c in claims]
    span = (claims[-1][0] - claims[0][0]) if len(claims) > 1 else 0.0
    start = report["run"]["start"]
    fair = _fairness(samples, dict(zip(team_ids, weights)), start)
    util = [
        sum(r for r, _ in t.values()) / args.workers
        for at, t in samples
        if at >= start + WARMUP_S and sum(q for _, q in t.values()) > 0
    ]
    series = [(round(at - start, 1), sum(r for r, _ in t.values()), sum(q for _, q in t.values()))
              for at, t in samples]  # fmt: skip
    endpoints = {phase: {k: _ms(v) for k, v in report[phase]["times"].items()}
                 for phase in ("rest", "load")}  # fmt: skip
    head = {
        "date": report["date"], "loadavg_before": report["loadavg_before"],
        "loadavg_after": report.get("loadavg_after"),
        "sizes": {"workers": args.workers, "teams": args.teams,
                  "jobs_queued": report["preload"]["queued"],
                  "jobs_live": report["run"]["live_queued"], "trace_points": args.trace_points},
        "claims": len(claims), "claims_per_s": round(len(claims) / span, 1) if span else None,
        "claim_ms": _ms(txn), "claim_ms_by_phase": _by_phase(claims, samples, args.teams),
        "checkout_ms": _ms([c[1] for c in claims]),
        "scheduling_overhead_ms_per_job": round(statistics.fmean(txn) * 1e3, 2) if txn else None,
        "scheduling_overhead_fraction": round(sum(txn) / sum(busy), 4) if busy else None,
        "jain_time_averaged": fair["jain_time_averaged"],
        "jain_instant_mean": fair["jain_instant_mean"],
        "utilisation": round(statistics.fmean(util), 4) if util else None,
        "endpoints_p99_ms": {ph: {k: v["p99"] for k, v in e.items()}
                             for ph, e in endpoints.items()},
        "trace_bytes_per_million_points": report["sizes"]["trace_bytes_per_million_points"],
        "cpu": cpu_by_role(report.get("cpu_samples", []), len(claims)),
        "every_job_finished_once": report["invariants"]["every_job_finished_once"],
        "errors": errors[:20] + report["rest"]["failures"][:5] + report["load"]["failures"][:5],
    }  # fmt: skip
    report["summary"] = head
    report["summary_full"] = {
        **head, "preload": report["preload"], "store_sizes": report["sizes"],
        "invariants": report["invariants"], "endpoints": endpoints, "fairness": fair,
        "idle_claims": len([i for o in outs for i in o["idle"]]),
        "claims_by_job": _claims_per_job(claims), "series": series,
        "claim_latency_percentiles_ms": {q: round((percentile(txn, q) or 0) * 1e3, 2)
                                         for q in (1, 10, 25, 50, 75, 90, 95, 99, 100)},
        "weights": dict(zip(team_ids, weights)),
    }  # fmt: skip
    report["_raw"] = {"txn": txn, "claims": claims, "series": series}


def cpu_by_role(samples: list[dict[str, Any]], claims: int) -> dict[str, Any]:
    """Who used the cores during the run: core-seconds and milliseconds per claimed job.

    The roles are :mod:`benchmarks.service._cpu_timeline`'s: ``postgres`` is this run's
    backends, ``simulator`` the simulated workers' processes, ``api`` the server, ``driver``
    this process (prober, sampler of the queue, feeder), ``other:*`` the rest of the machine.
    ``postgres_alone_claims_per_s`` is what the machine's cores would sustain were PostgreSQL
    alone on them at this CPU per job (in a pool the workers run on their own nodes).
    """
    core_s: dict[str, float] = {}
    for row in samples:
        for role, cores in row["cores"].items():
            core_s[role] = core_s.get(role, 0.0) + cores * row["dt"]
    if not core_s or not claims:
        return {}
    pg_ms = 1e3 * core_s.get("postgres", 0.0) / claims
    total = sum(v for k, v in core_s.items() if not k.startswith("other:"))
    return {
        "core_s": {k: round(v, 1) for k, v in sorted(core_s.items(), key=lambda kv: -kv[1])[:8]},
        "ms_per_job": {k: round(1e3 * v / claims, 2) for k, v in core_s.items()
                       if not k.startswith("other:") or v > 0.05 * total},
        "run_ms_per_job": round(1e3 * total / claims, 2),
        "postgres_alone_claims_per_s": (round(1e3 * (os.cpu_count() or 1) / pg_ms)
                                        if pg_ms else None),
    }  # fmt: skip


def _claims_per_job(claims: list[tuple[Any, ...]]) -> dict[str, int]:
    """How many jobs were claimed once, twice, ... (a correct run: all once)."""
    per: dict[str, int] = {}
    for c in claims:
        per[c[3]] = per.get(c[3], 0) + 1
    out: dict[str, int] = {}
    for n in per.values():
        out[str(n)] = out.get(str(n), 0) + 1
    return out


def plot(report: dict[str, Any], path: Path) -> None:
    """Queue and running jobs over time, claim latency, share per weight, endpoint p99."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s, raw = report["summary_full"], report["_raw"]
    fig, ax = plt.subplots(2, 2, figsize=(11, 8))
    t = [x[0] for x in raw["series"]]
    ax[0, 0].plot(t, [x[1] for x in raw["series"]], label="running")
    ax[0, 0].plot(t, [x[2] for x in raw["series"]], label="queued")
    ax[0, 0].set(xlabel="s", yscale="symlog", title=f"{s['claims_per_s']} claims/s, "
                 f"utilisation {s['utilisation']}")  # fmt: skip
    ax[0, 0].legend()
    txn = sorted(raw["txn"])
    if txn:
        ax[0, 1].plot([x * 1e3 for x in txn], [(i + 1) / len(txn) for i in range(len(txn))])
    ax[0, 1].set(
        xlabel="claim transaction, ms",
        xscale="log",
        ylabel="CDF",
        title=f"claim p50 {s['claim_ms']['p50']} ms, p99 {s['claim_ms']['p99']} ms",
    )
    fair, w = s["fairness"]["share_per_weight"], s["weights"]
    ax[1, 0].scatter([w[k] for k in fair], list(fair.values()), s=8)
    ax[1, 0].set(
        xlabel="team weight",
        ylabel="mean running / weight",
        title=f"Jain {s['jain_time_averaged']} over {len(fair)} backlogged teams",
    )
    names = list(s["endpoints"]["rest"])
    for k, phase in enumerate(("rest", "load")):
        vals = [s["endpoints"][phase][n]["p99"] or 0 for n in names]
        ax[1, 1].barh([i + 0.4 * k for i in range(len(names))], vals, height=0.4, label=phase)
    ax[1, 1].set(yticks=[i + 0.2 for i in range(len(names))], yticklabels=names,
                 xlabel="p99, ms", title="endpoints")  # fmt: skip
    ax[1, 1].axvline(250, color="grey", linestyle=":")
    ax[1, 1].legend()
    fig.suptitle(f"scale: {s['sizes']} ({s['date']}, load {' '.join(s['loadavg_before'])})",
                 fontsize=8)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
