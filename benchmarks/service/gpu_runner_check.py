"""GPU check of the service: jobs run by the worker's code on an embedded SQLite store.

    .venv/bin/python -m benchmarks.service.gpu_runner_check            # on a CUDA machine, < 7 min
    .venv/bin/python -m benchmarks.service.gpu_runner_check --device cpu --small  # anywhere

Each part submits jobs to an SQLite store and runs them with :func:`worker.runner.execute_job`,
as the embedded executor and the Celery workers do:

1. ``one_shot``: Omniglot 5-way 1-shot, T = 50, 10-RMD, width 64, meta-batch 4 (Section
   4.2.3), once with ``hypergradient.graphed: true`` (``core.Graphed`` on CUDA) and once
   with ``false`` (eager): seconds per hyper-iteration, peak hypergradient memory, meta-test
   accuracy, and how far the two runs' losses and learned ``λ`` are apart. On the CPU both
   run eagerly (the summary says why) and agree exactly.
2. ``examples``: every example job on the device for a few iterations (``--small``: a short
   unroll, and one-shot only in part 1).
3. ``resume``: a toy job crashed mid-run and resumed from its checkpoint equals an
   uninterrupted run; the CPU/device difference.
4. ``plugins``: one job of each problem kind installed under the ``bilevel.problems`` entry
   points and known to the job spec (skipped when there is none).
5. ``peers``: :mod:`benchmarks.library.peers` (ours against higher/torchopt on the CPU), when either
   peer is installed (skipped otherwise).

Omniglot comes from ``--data-dir``, else ``out/data`` (copy ``../shared/data/omniglot`` there
and carry ``out/data``), else ``../shared/data``. Prints one JSON object and writes it to
``gpu_runner_check.json`` under ``--out`` (default ``$OUT``, else benchmarks/results).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import os
import platform
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from benchmarks.library.one_shot_gpu import find_data_dir
from jobs import db, parse_spec, repo
from jobs.models import Job, utcnow
from jobs.specs.job import PROBLEMS
from tests.support import EXAMPLES, example, small_one_shot, team_with_key, tiny_spec
from worker.outcome import Outcome
from worker.runner import execute_job
from worker.settings import WorkerSettings


class _Crash(BaseException):
    pass


class Store:
    """A migrated SQLite store, a team, and the worker settings the jobs run under."""

    def __init__(self, data_dir: Path | None):
        tmp = tempfile.mkdtemp(prefix="gpu-runner-check-")
        url = db.sqlite_url(tmp)
        db.upgrade(url)
        self.sessions: sessionmaker[Session] = db.make_session_factory(db.make_engine(url))
        self.team_id, _ = team_with_key(self.sessions)
        self.settings = WorkerSettings(
            flush_every_s=0.5, checkpoint_every_n=5, state_dir=tmp, BILEVEL_DATA_DIR=data_dir
        )

    def run(self, spec: dict[str, Any], **kw: Any) -> tuple[Outcome, uuid.UUID]:
        """Submit ``spec`` and run it to its end: ``(outcome, job id)``."""
        with self.sessions.begin() as s:
            job_id = repo.create_job(s, self.team_id, parse_spec(spec))[0].id
        return execute_job(self.sessions, job_id, self.settings, **kw), job_id

    def job(self, job_id: Any) -> dict[str, Any]:
        with self.sessions() as s:
            j = s.get_one(Job, job_id)
            return {"status": j.status, "attempts": j.attempts, "error": j.error,
                    "summary": j.summary}  # fmt: skip

    def hparams(self, job_id: Any) -> dict[str, np.ndarray]:
        with self.sessions() as s:
            art = repo.load_artifact(s, job_id, "hparams")
        if art is None:
            return {}
        with np.load(io.BytesIO(art.data)) as z:
            return {k: z[k] for k in z.files}

    def losses(self, job_id: Any) -> list[float]:
        with self.sessions() as s:
            return list(repo.trace_columns(s, job_id, fields=["outer_loss"])["outer_loss"])


def _rel(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    """``||a - b|| / ||b||`` over every array of two λ files."""
    num = sum(float(np.sum((a[k].astype(np.float64) - b[k]) ** 2)) for k in b)
    den = sum(float(np.sum(b[k].astype(np.float64) ** 2)) for k in b)
    return (num / max(den, 1e-300)) ** 0.5


def one_shot_spec(device: str, small: bool, iterations: int) -> dict[str, Any]:
    """The paper's one-shot 10-RMD job (``small``: the test suite's tiny one)."""
    if small:
        spec = small_one_shot(iterations=iterations)
        spec["inner"]["steps"] = 5
        spec["hypergradient"] = {"method": "truncated", "K": 2}
    else:
        spec = copy.deepcopy(example("one_shot"))
        spec["outer"]["iterations"] = iterations
    spec["device"] = device
    return spec


def check_one_shot(store: Store, device: str, small: bool, iterations: int) -> dict[str, Any]:
    """Part 1: the one-shot job graphed and eager; timings, memory, accuracy, agreement."""
    spec = one_shot_spec(device, small, iterations)
    runs: dict[str, Any] = {}
    ids = {}
    for name, mode in (("graphed", True), ("eager", False)):
        spec["hypergradient"]["graphed"] = mode
        cuda = device.startswith("cuda")
        if cuda:  # the job's whole peak: a replayed graph's memory is allocated at recording
            torch.cuda.reset_peak_memory_stats(device)
        began = time.perf_counter()
        outcome, ids[name] = store.run(spec)
        job = store.job(ids[name])
        summary = job["summary"] or {}
        metrics = summary.get("metrics", {})
        runs[name] = row = {
            "outcome": outcome,
            "error": job["error"],
            "wall_s": time.perf_counter() - began,
            "s_per_iteration": summary.get("s_per_iteration"),
            # per hypergradient, above what was allocated before it (core.Metered)
            "peak_bytes": summary.get("peak_bytes"),
            "device_peak_bytes": torch.cuda.max_memory_allocated(device) if cuda else None,
            "graphed": summary.get("graphed"),
            "graphed_reason": summary.get("graphed_reason"),
            "test_accuracy": metrics.get("test_accuracy"),
            "test_accuracy_ci95": metrics.get("test_accuracy_ci95"),
        }
        print(f"one_shot graphed={mode}: {outcome}, {row['s_per_iteration']} s/iteration, "
              f"peak {row['peak_bytes']} B per hypergradient, {row['device_peak_bytes']} B "
              f"on the device, meta-test accuracy {row['test_accuracy']} "
              f"± {row['test_accuracy_ci95']}", flush=True)  # fmt: skip
    out: dict[str, Any] = {"iterations": iterations, "small": small, **runs}
    if all(r["outcome"] == "succeeded" for r in runs.values()):
        lg, le = store.losses(ids["graphed"]), store.losses(ids["eager"])

        def rel(a: list[float], b: list[float]) -> float:
            return max(abs(x - y) / max(abs(y), 1e-30) for x, y in zip(a, b))

        # some cuDNN backward kernels are not deterministic, and Adam carries float32 noise
        # on: the first iterations are the sharp comparison, the rest shows the drift
        eager_s, graphed_s = runs["eager"]["s_per_iteration"], runs["graphed"]["s_per_iteration"]
        out["speedup"] = eager_s / graphed_s if graphed_s else None
        out["agreement"] = agree = {
            "outer_loss_max_rel_first_10": rel(lg[:10], le[:10]),
            "outer_loss_max_rel": rel(lg, le),
            "hparams_rel": _rel(store.hparams(ids["graphed"]), store.hparams(ids["eager"])),
        }
        print(f"one_shot agreement: {json.dumps(agree)}", flush=True)
    return out


def check_examples(store: Store, device: str, small: bool) -> dict[str, Any]:
    """Part 2: every example job on ``device`` for a few iterations."""
    out = {}
    for path in sorted(EXAMPLES.glob("*.json")):
        if path.stem == "one_shot" and small:
            continue  # part 1 ran it already; small runs are about the path, and quick
        spec = json.loads(path.read_text())
        spec.update(device=device)
        spec["outer"]["iterations"] = 2 if small else 10
        if small:  # a short unroll: the dry run checks the path, not the numbers
            steps = spec["inner"]["steps"] = min(spec["inner"]["steps"], 10)
            if "K" in spec["hypergradient"]:
                spec["hypergradient"]["K"] = min(spec["hypergradient"]["K"], steps)
            spec["diagnostics"]["every"] = min(spec["diagnostics"]["every"], 1)
        began = time.perf_counter()
        outcome, job_id = store.run(spec)
        job = store.job(job_id)
        summary = job["summary"] or {}
        out[path.stem] = {"outcome": outcome, "error": job["error"],
                          "wall_s": time.perf_counter() - began,
                          "graphed": summary.get("graphed"),
                          "graphed_reason": summary.get("graphed_reason")}  # fmt: skip
    print(f"examples: {json.dumps({k: v['outcome'] for k, v in out.items()})}", flush=True)
    return out


def check_resume(store: Store, device: str) -> dict[str, Any]:
    """Part 3: a crashed toy job resumes from its checkpoint as if never interrupted."""
    spec = tiny_spec(iterations=40, device=device)
    reference, ref_id = store.run(spec)

    def crash(record: dict[str, Any]) -> None:
        if record["iteration"] == 13:
            raise _Crash

    with store.sessions.begin() as s:
        crashed = repo.create_job(s, store.team_id, parse_spec(spec))[0].id
    with contextlib.suppress(_Crash):
        execute_job(store.sessions, crashed, store.settings, on_record=crash)
    with store.sessions.begin() as s:
        s.execute(update(Job).where(Job.id == crashed).values(lease_until=utcnow() - timedelta(1)))
        repo.reap(s)
    resumed = execute_job(store.sessions, crashed, store.settings)
    _, cpu_id = store.run(tiny_spec(iterations=40, device="cpu"))
    a, b = store.hparams(crashed), store.hparams(ref_id)
    out = {
        "reference": reference,
        "resumed": resumed,
        "attempts": store.job(crashed)["attempts"],
        "trace_equal_to_uninterrupted": store.losses(crashed) == store.losses(ref_id),
        "hparams_equal_to_uninterrupted": bool(np.array_equal(a["hparams"], b["hparams"])),
        "cpu_vs_device_max_abs_diff": float(
            np.abs(store.hparams(cpu_id)["hparams"] - b["hparams"]).max()
        ),
    }
    print(f"resume: {json.dumps(out)}", flush=True)
    return out


def check_plugins(store: Store, device: str) -> dict[str, Any]:
    """Part 4: a short job of each installed ``bilevel.problems`` kind the spec knows."""
    found = entry_points(group="bilevel.problems")
    if not found:
        print("plugins: none installed under the bilevel.problems entry points: skipped")
        return {"skipped": "no bilevel.problems entry points installed"}
    out: dict[str, Any] = {}
    for ep in found:
        if ep.name not in PROBLEMS:
            out[ep.name] = {"skipped": f"kind {ep.name!r} is not in jobs.specs.job.PROBLEMS"}
            continue
        spec = tiny_spec(iterations=5, device=device)
        spec["problem"] = {"kind": ep.name}  # its defaults
        spec["diagnostics"]["every"] = 0
        try:
            outcome, job_id = store.run(spec)
        except Exception as exc:  # a spec the plugin's model refuses: report, go on
            out[ep.name] = {"skipped": f"{type(exc).__name__}: {exc}"}
            continue
        summary = store.job(job_id)["summary"] or {}
        out[ep.name] = {"outcome": outcome, "error": store.job(job_id)["error"],
                        "s_per_iteration": summary.get("s_per_iteration"),
                        "graphed": summary.get("graphed"),
                        "graphed_reason": summary.get("graphed_reason")}  # fmt: skip
    print(f"plugins: {json.dumps(out, default=str)}", flush=True)
    return out


def check_peers(small: bool, out_dir: Path) -> dict[str, Any]:
    """Part 5: :mod:`benchmarks.library.peers` when higher or torchopt is installed."""
    installed = []
    for name in ("higher", "torchopt"):
        with contextlib.suppress(ImportError):
            __import__(name)
            installed.append(name)
    if not installed:
        print("peers: neither higher nor torchopt is installed: skipped")
        return {"skipped": "neither higher nor torchopt is installed"}
    from benchmarks.library import peers

    path = out_dir / "peers.json"
    size = ["--n", "200", "--d", "16", "--T", "10", "--K", "1", "5", "--repeats", "1"]
    rc = peers.main([*(size if small else ["--repeats", "3"]), "--json", str(path)])
    rows = json.loads(path.read_text())["rows"]
    return {"rc": rc, "peers": installed, "rows": rows}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    p.add_argument("--small", action="store_true", help="tiny jobs: a dry run in seconds")
    p.add_argument("--iterations", type=int, default=None,
                   help="one-shot hyper-iterations per run (default 300; small: 4)")  # fmt: skip
    p.add_argument("--data-dir", type=Path, default=None, help="holds omniglot/")
    p.add_argument("--out", type=Path, default=None, help="default: $OUT, else benchmarks/results")
    p.add_argument("--skip", nargs="*", default=[], choices=PARTS, help="parts to leave out")
    return p


PARTS = ("one_shot", "examples", "resume", "plugins", "peers")


def main(argv: list[str] | None = None) -> int:
    """Run every part; 0 when every job that ran succeeded (and agreed), else 1."""
    args = _parser().parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("gpu_runner_check: no CUDA device; pass --device cpu for a dry run")
    if args.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True  # fixed shapes: cuDNN picks its fastest kernels
    out_dir = args.out or Path(os.environ.get("OUT") or "benchmarks/results")
    out_dir.mkdir(parents=True, exist_ok=True)
    store = Store(find_data_dir(args.data_dir))
    iterations = args.iterations or (4 if args.small else 300)
    report: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": platform.node(),
        "torch": torch.__version__,
        "device": args.device,
        "gpu": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None,
    }
    parts: dict[str, Callable[[], dict[str, Any]]] = {
        "one_shot": lambda: check_one_shot(store, args.device, args.small, iterations),
        "examples": lambda: check_examples(store, args.device, args.small),
        "resume": lambda: check_resume(store, args.device),
        "plugins": lambda: check_plugins(store, args.device),
        "peers": lambda: check_peers(args.small, out_dir),
    }
    for name, part in parts.items():
        if name not in args.skip:
            began = time.perf_counter()
            report[name] = part()
            report[name]["part_s"] = time.perf_counter() - began
    text = json.dumps(report, indent=1, default=str)
    (out_dir / "gpu_runner_check.json").write_text(text)
    print(text)
    return 0 if _ok(report) else 1


def _ok(report: dict[str, Any]) -> bool:
    """Every job that ran succeeded; the one-shot runs agree to float32 noise at the start."""
    outcomes = [
        v["outcome"]
        for part in ("one_shot", "examples", "plugins")
        for v in (report.get(part) or {}).values()
        if isinstance(v, dict) and "outcome" in v
    ]
    resume = report.get("resume") or {}
    agree = (report.get("one_shot") or {}).get("agreement")
    return (
        all(o == "succeeded" for o in outcomes)
        and (not resume or resume["hparams_equal_to_uninterrupted"])
        and (agree is None or agree["outer_loss_max_rel_first_10"] < 1e-3)
    )


if __name__ == "__main__":
    raise SystemExit(main())
