"""The load benchmark's report: what the store says was done, and the printed table."""

from __future__ import annotations

from jobs.status import JobStatus

__all__ = ["print_table", "store_accounting"]


def store_accounting(sessions, team_id, submitted: dict[str, int]) -> dict:
    """Jobs and trace points lost or doubled: the submitted jobs against the store's rows."""
    from sqlalchemy import func, select

    from jobs.store.models import Job, TracePoint

    q = (
        select(
            Job.id,
            Job.status,
            Job.iterations,
            func.count(TracePoint.iteration),
            func.count(func.distinct(TracePoint.iteration)),
        )
        .outerjoin(TracePoint, TracePoint.job_id == Job.id)
        .where(Job.team_id == team_id)
        .group_by(Job.id)
    )
    with sessions() as s:
        rows = {str(r[0]): r for r in s.execute(q)}
    succeeded = [rows[j] for j in submitted if j in rows and rows[j][1] == JobStatus.SUCCEEDED]
    statuses: dict[str, int] = {}
    for j in submitted:
        st = rows[j][1] if j in rows else "missing"
        statuses[st] = statuses.get(st, 0) + 1
    expected = sum(r[2] for r in succeeded)
    stored = sum(r[4] for r in succeeded)
    return {
        "jobs_submitted": len(submitted),
        "jobs_succeeded": len(succeeded),
        "jobs_lost": len(submitted) - len(succeeded),
        "job_statuses": statuses,
        "trace_points_expected": expected,
        "trace_points_stored": stored,
        "trace_points_lost": expected - stored,
        "trace_points_doubled": sum(r[3] - r[4] for r in succeeded),
    }


def print_table(report: dict) -> None:
    """The routes' latencies, the load, the accounting and who held the CPUs."""
    print(
        f"\n{'route':34s} {'requests':>9s} {'errors':>7s} {'304':>6s} "
        f"{'p50 ms':>8s} {'p99 ms':>8s} {'max ms':>8s}"
    )
    for name, r in report["routes"].items():
        print(
            f"{name:34s} {r['requests']:9d} {r['errors']:7d} {r.get('not_modified', 0):6d} "
            f"{r['p50_ms']:8.1f} {r['p99_ms']:8.1f} {r['max_ms']:8.1f}"
        )
    lo = report["load"]
    print(
        f"\n{lo['requests']} requests in {lo['wall_s']:.1f} s: {lo['throughput_rps']:.1f} req/s,"
        f" {lo['errors']} errors; pollers' p99 {lo['poll_p99_ms']:.1f} ms"
        f" (target < 50 ms: {'met' if lo['target_met'] else 'MISSED'}); "
        f"{lo.get('db_sessions_opened')} connections opened to the store meanwhile"
    )
    a = report["accounting"]
    print(
        f"jobs: {a['jobs_submitted']} submitted, {a['jobs_succeeded']} succeeded, "
        f"{a['jobs_lost']} lost; trace points: {a['trace_points_expected']} expected, "
        f"{a['trace_points_stored']} stored, {a['trace_points_lost']} lost; pollers missed "
        f"{a['poller_points_missed']} of {a['poller_points_expected']} on "
        f"{a['complete_follows']} whole-job follows"
    )
    cpu = report.get("cpu")
    if cpu:
        print(f"\nCPU beside the polls ({cpu['samples']} samples; cores in use, mean):")
        for name in ("slow", "fast"):
            g = cpu[name]
            roles = ", ".join(f"{k} {v:.2f}" for k, v in g["cores"].items() if v >= 0.01)
            print(
                f"  {name} (>= or < {cpu['slow_ms']:.0f} ms, {g['requests']} polls): {roles}; "
                f"runnable {g['runnable']}, stalled {g['cpu_stall_share']}, "
                f"client loop lag {g['client_loop_lag_ms_mean']} ms"
            )
    share = report.get("app_share")
    if share and share["slow"]["requests"]:
        sl, fa = share["slow"], share["fast"]
        print(
            f"  the app's own time (Server-Timing) in the slow polls: mean {sl['app_ms_mean']} "
            f"of {sl['total_ms_mean']} ms, max {sl['app_ms_max']} ms; {sl['app_over_half']} of "
            f"{sl['requests']} spent over half their time in the app (fast polls: "
            f"{fa['app_ms_mean']} of {fa['total_ms_mean']} ms)"
        )
    if report.get("trace_overhead"):
        o = report["trace_overhead"]
        print(
            f"trace writing: runner {o['runner_median_s']:.3f} s vs core.fit "
            f"{o['fit_alone_median_s']:.3f} s (median of {o['repeats']}): "
            f"{o['overhead_pct']:+.2f}% (target < 3%); of it in trace flushes "
            f"{o['flush_median_s']:.3f} s ({o['flush_pct']:.2f}%)"
        )
