"""GPU check of the runner (a script, not a test): CUDA jobs end to end on an SQLite store.

    .venv/bin/python -m benchmarks.gpu_runner_check    # on a machine with CUDA; prints JSON

Runs every example with ``device: "cuda"``, a toy job crashed mid-run and resumed from its
checkpoint (compared with an uninterrupted CUDA run), and the CPU/CUDA difference.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from datetime import timedelta

import numpy as np
import torch
from sqlalchemy import update

from jobs import db, parse_spec, repo
from jobs.models import Job, utcnow
from tests.factories import EXAMPLES, team_with_key, tiny_spec
from worker.runner import execute_job
from worker.settings import WorkerSettings


class _Crash(BaseException):
    pass


def main() -> None:
    tmp = tempfile.mkdtemp()
    url = db.sqlite_url(tmp)
    db.upgrade(url)
    sessions = db.make_session_factory(db.make_engine(url))
    team_id, _ = team_with_key(sessions)
    settings = WorkerSettings(flush_every_s=0.01, checkpoint_every_n=5, state_dir=tmp)
    out: dict = {"torch": torch.__version__, "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(0)

    def submit(spec):
        with sessions.begin() as s:
            return repo.create_job(s, team_id, parse_spec(spec))[0].id

    def job(job_id):
        with sessions() as s:
            j = s.get_one(Job, job_id)
            return {"status": j.status, "attempts": j.attempts, "error": j.error}

    def hparams(job_id):
        with sessions() as s:
            art = repo.load_artifact(s, job_id, "hparams")
            if art is None:
                return {"hparams": np.array([np.nan])}
            with np.load(io.BytesIO(art.data)) as z:
                return {k: z[k] for k in z.files}

    def trace(job_id):
        with sessions() as s:
            return repo.trace_columns(s, job_id, fields=["outer_loss"])

    examples = {}
    for path in sorted(EXAMPLES.glob("*.json")):
        spec = json.loads(path.read_text())
        spec.update(device="cuda")
        spec["outer"]["iterations"] = 10
        job_id = submit(spec)
        outcome = execute_job(sessions, job_id, settings)
        examples[path.stem] = {"outcome": outcome, **job(job_id)}
    out["examples"] = examples

    spec = tiny_spec(iterations=40, device="cuda")
    ref = submit(spec)
    out["reference"] = execute_job(sessions, ref, settings)
    crashed = submit(spec)

    def crash(record):
        if record["iteration"] == 13:
            raise _Crash

    with contextlib.suppress(_Crash):
        execute_job(sessions, crashed, settings, on_record=crash)
    with sessions.begin() as s:
        s.execute(update(Job).where(Job.id == crashed).values(lease_until=utcnow() - timedelta(1)))
        repo.reap(s)
    out["resumed"] = execute_job(sessions, crashed, settings)
    out["resumed_job"] = job(crashed)
    a, b = trace(crashed), trace(ref)
    out["trace_complete"] = a["iteration"] == list(range(1, 41))
    out["trace_equal_to_uninterrupted"] = a["outer_loss"] == b["outer_loss"]
    out["hparams_equal_to_uninterrupted"] = bool(
        np.array_equal(hparams(crashed)["hparams"], hparams(ref)["hparams"])
    )
    cpu = submit(tiny_spec(iterations=40, device="cpu"))
    execute_job(sessions, cpu, settings)
    out["cpu_vs_cuda_max_abs_diff"] = float(
        np.abs(hparams(cpu)["hparams"] - hparams(ref)["hparams"]).max()
    )
    print(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
