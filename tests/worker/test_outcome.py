"""The worker's vocabulary: one ``Outcome`` enum, no test knob in its settings, no torch in
the Celery parent."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from jobs.status import JobStatus
from worker.outcome import Outcome
from worker.settings import WorkerSettings

ROOT = Path(__file__).resolve().parents[2]


def test_final_outcomes_are_spelled_as_the_job_statuses_they_record():
    for status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED):
        assert Outcome(status) == status


def test_only_skipped_and_deferred_deliveries_held_no_claim():
    assert {o for o in Outcome if not o.claimed} == {Outcome.SKIPPED, Outcome.DEFERRED}


def test_worker_settings_carry_no_test_only_fault_knob():
    assert [name for name in WorkerSettings.model_fields if name.startswith("fault")] == []


def test_importing_the_tasks_does_not_load_torch():
    code = "import sys, worker.tasks; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr
