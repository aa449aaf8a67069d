"""The trace store at size: bytes per million points, page latency, compaction throughput.

    .venv/bin/python -m benchmarks.service.trace_store [--points 10000000] [--revision head]
        [--out benchmarks/service/results/trace_store.json]

In a throwaway PostgreSQL database migrated to ``--revision`` (``head``: trace_points
partitioned by job; ``0015``: the plain table before), preloads ``--points`` points of
finished jobs as the scale benchmark does (``benchmarks.service._scale_load``), then:

- sizes: heap, indexes and TOAST of ``trace_points`` (every partition) and ``trace_blocks``,
  per million points;
- the plans (``EXPLAIN (ANALYZE, BUFFERS)``) of the statements a trace page runs;
- the store's side of the two trace requests the scale benchmark times (a page of
  ``max_points=1000`` and an ``after=`` poll of the last 50 points), each on a different
  job (first touch) and again (warm), p50/p99, alone and with ``--readers`` threads reading;
- the same two requests through ``bilevel serve`` (HTTP): the process's first, each job's
  first, and warm;
- ``--reindex``: the sizes again after ``REINDEX TABLE trace_points`` (a packed index);
- ``--compact``: every job compacted (``repo.compact_due``): points per second, the sizes
  after, and the page of a compacted job.
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from alembic import command
from sqlalchemy import text

from benchmarks.service import _scale_load as load
from jobs.store import db, repo
from migrations import alembic_config

__all__ = ["main"]


def _sizes(sessions: Any, points: int) -> dict[str, Any]:
    with sessions() as s:
        out = load.trace_sizes(s)
        rows = s.scalar(text("SELECT count(*) FROM trace_points"))
    out["rows"] = rows
    out["bytes_per_million_points"] = round(out["bytes"] / (points / 1e6)) if points else None
    out["heap_bytes_per_row"] = round(out["trace_points"]["heap"] / rows, 1) if rows else None
    return out


def _pct(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    if not xs:
        return {"n": 0}
    at = lambda q: xs[min(len(xs) - 1, int(q * len(xs)))]  # noqa: E731
    return {"n": len(xs), "p50": round(at(0.5) * 1e3, 2), "p99": round(at(0.99) * 1e3, 2),
            "max": round(xs[-1] * 1e3, 2)}  # fmt: skip


def _page(sessions: Any, job_id: uuid.UUID, *, max_points: int | None, after: int) -> int:
    """What GET /trace asks of the store: the span, then the columns."""
    with sessions() as s:
        span = repo.trace_span_of(s, job_id, after)
        cols = repo.trace_columns(s, job_id, after=after, max_points=max_points, span=span)
    return len(cols["iteration"])


def _time(fn: Callable[[], Any], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def _latencies(sessions: Any, ids: list[uuid.UUID], per: int, rounds: int) -> dict[str, Any]:
    rng = random.Random(1)
    first = rng.sample(ids, min(rounds, len(ids)))
    res: dict[str, Any] = {}
    for name, max_points, after in (("trace_page", 1000, 0), ("trace_after", None, per - 50)):
        fn = functools.partial(_page, sessions, max_points=max_points, after=after)
        firsts = [t for j in first for t in _time(functools.partial(fn, j), 1)]
        warm = _time(functools.partial(fn, first[0]), rounds)
        res[name] = {"first_touch": _pct(firsts), "warm": _pct(warm)}
    return res


def _under_load(sessions: Any, ids: list[uuid.UUID], per: int, readers: int, rounds: int) -> Any:
    """The same timings while ``readers`` threads read other jobs' pages without pause."""
    stop = threading.Event()

    def reader(k: int) -> None:
        rng = random.Random(100 + k)
        while not stop.is_set():
            _page(sessions, rng.choice(ids), max_points=1000, after=0)

    threads = [threading.Thread(target=reader, args=(k,), daemon=True) for k in range(readers)]
    for t in threads:
        t.start()
    try:
        return _latencies(sessions, ids, per, rounds)
    finally:
        stop.set()
        for t in threads:
            t.join()


def _http(url: str, key: str, ids: list[uuid.UUID], per: int, rounds: int) -> dict[str, Any]:
    """The two requests through ``bilevel serve``: the process's first, each job's first, warm."""
    from benchmarks.service.scale import _serve
    from tests.support import REDIS_URL

    api, base = _serve(url, argparse.Namespace(redis_url=REDIS_URL, workers=1))
    order = random.Random(2).sample(ids, min(rounds, len(ids)))
    res: dict[str, Any] = {}
    try:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as c:
            for name, query in (("trace_page", "?max_points=1000"),
                                ("trace_after", f"?after={per - 50}")):  # fmt: skip
                paths = [f"/v1/jobs/{j}/trace{query}" for j in order]
                firsts = [t for p in paths for t in _time(functools.partial(c.get, p), 1)]
                warm = _time(functools.partial(c.get, paths[0]), rounds)
                c.get(paths[-1]).raise_for_status()  # what was timed were answers
                res[name] = {"process_first_ms": round(firsts[0] * 1e3, 2),
                             "first_touch": _pct(firsts[1:]), "warm": _pct(warm)}  # fmt: skip
    finally:
        api.terminate()
        api.wait(10)
    return res


def _explain(sessions: Any, job_id: uuid.UUID) -> dict[str, str]:
    """The plans of a page's statements, as PostgreSQL ran them (statement log)."""
    plans: dict[str, str] = {}
    with sessions() as s:
        s.execute(text("LOAD 'auto_explain'"))
        for k, v in {"auto_explain.log_min_duration": "0", "auto_explain.log_analyze": "on",
                     "auto_explain.log_buffers": "on", "client_min_messages": "log",
                     "auto_explain.log_level": "notice"}.items():  # fmt: skip
            s.execute(text(f"SET {k} = '{v}'"))
        raw = s.connection().connection.driver_connection
        notes: list[str] = []
        raw.add_notice_handler(lambda d: notes.append(d.message_primary or ""))  # type: ignore[union-attr]
        span = repo.trace_span_of(s, job_id, 0)
        repo.trace_columns(s, job_id, max_points=1000, span=span)
        s.execute(text("SELECT 1"))  # the last plan's notice comes with the next answer
        for n, note in enumerate(notes):
            plans[f"statement_{n}"] = note
    return plans


def _args(argv: Sequence[str] | None) -> argparse.Namespace:
    from tests.support import PG_ADMIN_URL

    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--points", type=int, default=10_000_000)
    ap.add_argument("--per-trace", type=int, default=load.TRACE_JOB_POINTS)
    ap.add_argument("--revision", default="head", help="migrate to this (0015: unpartitioned)")
    ap.add_argument("--rounds", type=int, default=100, help="timed requests per figure")
    ap.add_argument("--readers", type=int, default=4, help="threads reading, under load")
    ap.add_argument("--compact", action="store_true", help="then compact every job, timed")
    ap.add_argument("--reindex", action="store_true", help="also measure the index rebuilt")
    ap.add_argument("--pg-admin-url", default=PG_ADMIN_URL)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/service/results/trace_store.json"))
    return ap.parse_args(argv)


def _run(url: str, args: argparse.Namespace, report: dict[str, Any]) -> None:
    from tests.support import team_with_key, tiny_spec

    command.upgrade(alembic_config(url), args.revision)
    engine = db.make_engine(url, pool_size=args.readers + 2, max_overflow=2)
    sessions = db.make_session_factory(engine)
    team_id, key = team_with_key(sessions, "trace-store")
    t0 = time.perf_counter()
    ids = load.preload_trace(sessions, [team_id], tiny_spec(), args.points, per_job=args.per_trace)
    report["preload_s"] = round(time.perf_counter() - t0, 1)
    with engine.connect() as c:
        c.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
    report["sizes"] = _sizes(sessions, args.points)
    print("sizes:", json.dumps(report["sizes"]))
    if args.reindex:  # the same index packed (a B-tree split 50/50 by interleaved jobs)
        t = time.perf_counter()
        with engine.connect() as c:
            c.execution_options(isolation_level="AUTOCOMMIT").execute(
                text("REINDEX TABLE trace_points")
            )
        report["reindex_s"] = round(time.perf_counter() - t, 1)
        report["sizes_reindexed"] = _sizes(sessions, args.points)
        print("reindexed:", json.dumps(report["sizes_reindexed"]))
    report["plans"] = _explain(sessions, ids[-1])
    report["rest"] = _latencies(sessions, ids, args.per_trace, args.rounds)
    print("at rest:", json.dumps(report["rest"]))
    report["http_rest"] = _http(url, key, ids, args.per_trace, args.rounds)
    print("http at rest:", json.dumps(report["http_rest"]))
    report["load"] = _under_load(sessions, ids, args.per_trace, args.readers, args.rounds)
    print(f"under load ({args.readers} readers):", json.dumps(report["load"]))
    if args.compact:
        done = repo.compact_due(sessions, timedelta(0))
        report["compaction"] = done.as_dict()
        print("compaction:", json.dumps(report["compaction"]))
        with engine.connect() as c:
            c.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
        report["sizes_compacted"] = _sizes(sessions, args.points)
        page = functools.partial(_page, sessions, ids[0], max_points=1000, after=0)
        report["compacted_page"] = _pct(_time(page, 20))
        print("compacted:", json.dumps(report["sizes_compacted"]), report["compacted_page"])
    engine.dispose()


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run in a throwaway database; print the figures and write them as JSON."""
    args = _args(argv)
    report = {**load.stamp(), "args": {k: str(v) for k, v in vars(args).items()}}
    with load.throwaway_database(args.pg_admin_url, "bench_traces") as url:
        _run(url, args, report)
    report["loadavg_after"] = load.loadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
