"""Data set uploads: throughput per store, the API's peak memory, the worker cache's hit rate.

    .venv/bin/python -m benchmarks.service.dataset_upload [--size-mb 500] [--jobs 3]

1. Writes an ``.npz`` of about ``--size-mb`` MB (random float32 features, int64 labels).
2. For each store, starts ``bilevel serve`` as its own process and uploads the file with
   ``POST /v1/datasets`` (streamed from disk with its Content-Length, as ``bilevel datasets
   upload`` does), timing it and reading the API process's peak resident memory (``VmHWM``
   in ``/proc/<pid>/status``) before and after: PostgreSQL (the distributed mode, a
   throwaway database; needs Redis too) and SQLite (the embedded mode).
3. In the embedded mode, uploads scikit-learn's digits and runs ``--jobs`` small
   ``feature_regularization`` jobs on it one after another: the first fetches the file from
   the store, the others should find it in the worker's cache (``summary.dataset_cache``).

Needs PostgreSQL and Redis as the service tests do (``--pg-admin-url``, ``--redis-url``).
Writes the numbers as JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg

from jobs.status import ACTIVE, JobStatus

__all__ = ["main"]


def _make_file(path: Path, size_mb: int) -> int:
    """An .npz of about ``size_mb`` MB: x_train dominates; val and test are small."""
    d = 256
    n = max(size_mb * 1_000_000 // (4 * d), 10)
    rng = np.random.default_rng(0)
    arrays: dict[str, Any] = {
        "x_train": rng.standard_normal((n, d), dtype=np.float32),
        "y_train": rng.integers(0, 10, n),
        "x_val": rng.standard_normal((1000, d), dtype=np.float32),
        "y_val": rng.integers(0, 10, 1000),
    }
    np.savez(path, **arrays)
    return path.stat().st_size


def _memory_kib(pid: int) -> dict[str, int]:
    """Resident (VmRSS) and peak resident (VmHWM) memory of a process, in KiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            out[line.split(":")[0]] = int(line.split()[1])
    return out


def _stream(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            yield block


def _upload(base: str, headers: dict[str, str], path: Path, pid: int) -> dict[str, Any]:
    size = path.stat().st_size
    before = _memory_kib(pid)
    t0 = time.perf_counter()
    with httpx.Client(base_url=base, headers=headers, timeout=httpx.Timeout(30, read=900)) as c:
        r = c.post("/v1/datasets", params={"name": path.stem}, content=_stream(path),
                   headers={"Content-Type": "application/octet-stream",
                            "Content-Length": str(size)})  # fmt: skip
    seconds = time.perf_counter() - t0
    if r.status_code != 201:
        raise SystemExit(f"upload failed: {r.status_code} {r.text[:500]}")
    after = _memory_kib(pid)
    return {
        "bytes": size,
        "seconds": round(seconds, 2),
        "mb_per_s": round(size / 1e6 / seconds, 1),
        "api_rss_before_mib": round(before["VmRSS"] / 1024, 1),
        "api_peak_rss_mib": round(after["VmHWM"] / 1024, 1),
        "api_peak_growth_mib": round((after["VmHWM"] - before["VmHWM"]) / 1024, 1),
        "dataset_id": r.json()["id"],
    }


def _serve(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    from tests.support import ROOT, free_port, wait_ready

    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "serve", "--port", str(port), "--log-level",
             "warning"],
            cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    if not wait_ready(base, proc, 120.0):
        proc.kill()
        raise SystemExit(f"the API did not become ready:\n{log.read_text()[-2000:]}")
    return proc, base


def _postgres(path: Path, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from jobs import db
    from tests.support import team_with_key

    name = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.pg_admin_url, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    url = args.pg_admin_url.rpartition("/")[0] + "/" + name
    try:
        db.upgrade(url)
        engine = db.make_engine(url)
        _, key = team_with_key(db.make_session_factory(engine))
        engine.dispose()
        env = {"DATABASE_URL": url, "BROKER_URL": args.redis_url,
               "BILEVEL_QUEUE_PREFIX": f"bench{uuid.uuid4().hex[:6]}",
               "BILEVEL_UPLOAD_DIR": str(tmp)}  # fmt: skip
        proc, base = _serve(env, tmp / "serve-pg.log")
        try:
            return _upload(base, {"Authorization": f"Bearer {key}"}, path, proc.pid)
        finally:
            proc.terminate()
            proc.wait(30)
    finally:
        with psycopg.connect(args.pg_admin_url, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _embedded(path: Path, jobs: int, tmp: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    state = tmp / "state"
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "BROKER_URL", "CELERY_BROKER_URL")}  # fmt: skip
    env.update(BILEVEL_STATE_DIR=str(state), BILEVEL_UPLOAD_DIR=str(tmp),
               BILEVEL_TORCH_THREADS="1", BILEVEL_FLUSH_EVERY_S="0.2")  # fmt: skip
    proc, base = _serve(env, tmp / "serve-sqlite.log")
    try:
        headers = {"Authorization": f"Bearer {(state / 'api_key').read_text().strip()}"}
        upload = _upload(base, headers, path, proc.pid)
        return upload, _cache_hits(base, headers, jobs, tmp)
    finally:
        proc.terminate()
        proc.wait(30)


def _cache_hits(base: str, headers: dict[str, str], jobs: int, tmp: Path) -> dict[str, Any]:
    from tests.support import digits_arrays, example

    small = tmp / "digits.npz"
    arrays: dict[str, Any] = digits_arrays()
    np.savez(small, **arrays)
    with httpx.Client(base_url=base, headers=headers, timeout=60) as c:
        dataset_id = c.post(
            "/v1/datasets",
            params={"name": "digits"},
            content=small.read_bytes(),
            headers={"Content-Type": "application/octet-stream"},
        ).json()["id"]
        spec = copy.deepcopy(example("feature_regularization"))
        spec["problem"].update(dataset=dataset_id, model="softmax")
        spec["inner"]["steps"] = 20
        spec["hypergradient"] = {"method": "truncated", "K": 5}
        spec["outer"]["iterations"] = 3
        seen = []
        for _ in range(jobs):
            job_id = c.post("/v1/jobs", json=spec).json()["id"]
            deadline = time.monotonic() + 300
            while (job := c.get(f"/v1/jobs/{job_id}").json())["status"] in ACTIVE:
                if time.monotonic() > deadline:
                    raise SystemExit(f"job {job_id} did not finish in 300 s")
                time.sleep(0.2)
            if job["status"] != JobStatus.SUCCEEDED:
                raise SystemExit(f"job {job_id} {job['status']}: {job.get('error')}")
            seen.append(job["summary"]["dataset_cache"])
    hits = seen.count("hit")
    return {"jobs": jobs, "reads": seen, "hits": hits, "hit_rate": round(hits / jobs, 3),
            "hit_rate_after_first": round(hits / max(jobs - 1, 1), 3)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Parse the flags, run the measurements, print a table, write JSON."""
    from tests.support import PG_ADMIN_URL, REDIS_URL  # also sets the key secret we hash with

    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=500, help="size of the uploaded file")
    ap.add_argument("--jobs", type=int, default=3, help="jobs on one data set, for the cache")
    ap.add_argument("--stores", nargs="+", choices=["postgres", "sqlite"],
                    default=["postgres", "sqlite"])  # fmt: skip
    ap.add_argument("--pg-admin-url", default=PG_ADMIN_URL)
    ap.add_argument("--redis-url", default=REDIS_URL)
    ap.add_argument("--out", type=Path, default=Path("out/dataset_upload.json"))
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bilevel-bench-") as d:
        tmp = Path(d)
        path = tmp / "big.npz"
        size = _make_file(path, args.size_mb)
        print(f"file: {path.name}, {size / 1e6:.1f} MB")
        report: dict[str, Any] = {"file_bytes": size, "uploads": {}}
        if "postgres" in args.stores:
            report["uploads"]["postgres"] = _postgres(path, args, tmp)
        if "sqlite" in args.stores:
            report["uploads"]["sqlite"], report["cache"] = _embedded(path, args.jobs, tmp)
    print(f"{'store':10} {'MB/s':>8} {'seconds':>8} {'API RSS before':>15} {'API peak RSS':>13}")
    for store, u in report["uploads"].items():
        print(f"{store:10} {u['mb_per_s']:>8} {u['seconds']:>8} "
              f"{u['api_rss_before_mib']:>11} MiB {u['api_peak_rss_mib']:>9} MiB")  # fmt: skip
    if "cache" in report:
        c = report["cache"]
        print(
            f"worker cache over {c['jobs']} jobs on one data set: {c['reads']} "
            f"(hit rate {c['hit_rate']:.0%}; {c['hit_rate_after_first']:.0%} after the first)"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
