"""``bilevel status`` flags a job whose run diverged, one line per warning on stderr."""

from __future__ import annotations

import json
import uuid

from jobs.store.models import Job
from tests.cli.running import run_cli
from tests.factories import tiny_spec
from worker.divergence import DivergenceWatch

_AUTH = ("--key", "blv_x_y", "--url", "http://x")


def test_status_prints_each_divergence_warning_with_its_count(state, api_server, capsys):
    path = state / "job.json"
    path.write_text(json.dumps(tiny_spec()))
    job_id = run_cli(capsys, "submit", str(path), *_AUTH)[1].strip()
    watch = DivergenceWatch()
    for i, loss in enumerate([2.0, 3e5, 4e5, 2.0], start=1):
        watch.observe({"iteration": i, "outer_loss": loss, "grad_norm": 1.0})
    with api_server.sessions.begin() as s:
        s.get(Job, uuid.UUID(job_id)).summary = {"warnings": watch.warnings}
    code, out, err = run_cli(capsys, "status", job_id, *_AUTH)
    assert code == 0 and json.loads(out)["summary"]["warnings"] == watch.warnings
    assert err == (
        "warning: outer loss jumped to 3e+05 at iteration 2, 1.5e+05x its reference 2 (more "
        "than 100x: the larger of its first value and the median of its latest ones) "
        "(2 iterations flagged)\n"
    )
