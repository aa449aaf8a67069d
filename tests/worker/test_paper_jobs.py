"""The paper's experiments as service jobs: one-shot Omniglot and task interaction, run by
the worker's runner on an SQLite store (the embedded mode's), on the CPU."""

from __future__ import annotations

import contextlib
import copy
import io
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import update

from jobs.store import repo
from jobs.store.models import Job, utcnow
from tests.factories import example, queued_job, small_one_shot
from tests.shared_data import require_omniglot
from worker.runner import execute_job
from worker.settings import WorkerSettings


class _Crash(BaseException):
    """Stands in for a killed process: nothing in the runner catches it."""


def _settings(data_dir: Path | None = None) -> WorkerSettings:
    # data_dir is read from its environment name only
    return WorkerSettings(
        flush_every_s=0.01, checkpoint_every_n=2, lease_s=30, BILEVEL_DATA_DIR=data_dir
    )


def _job(sessions, job_id) -> Job:
    with sessions() as s:
        job = s.get(Job, job_id)
        s.expunge(job)
        return job


def _hparams(sessions, job_id) -> dict[str, np.ndarray]:
    with sessions() as s:
        data = repo.load_artifact(s, job_id, "hparams").data
    with np.load(io.BytesIO(data)) as z:
        return {k: z[k] for k in z.files}


def test_a_one_shot_job_reports_meta_test_accuracy_with_its_interval(sqlite_sessions):
    settings = _settings(data_dir=require_omniglot())
    job_id = queued_job(sqlite_sessions, small_one_shot())
    assert execute_job(sqlite_sessions, job_id, settings) == "succeeded"
    job = _job(sqlite_sessions, job_id)
    metrics, summary = job.summary["metrics"], job.summary
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    assert metrics["test_tasks"] == 6
    # the half-width of a 95% interval over 6 tasks' accuracies: between 0 and 1.96 * 0.5 / √6
    assert 0.0 <= metrics["test_accuracy_ci95"] <= 1.96 * 0.5 / 6**0.5
    assert summary["s_per_iteration"] > 0 and summary["peak_bytes"] > 0
    assert summary["graphed"] is False and "cpu" in summary["graphed_reason"]
    with sqlite_sessions() as s:
        assert repo.trace_columns(s, job_id)["iteration"] == [1, 2, 3, 4]
    hp = _hparams(sqlite_sessions, job_id)
    # λ: the hyper-representation, the centres, ρ and the learned inner step size
    assert {"conv1", "conv2", "c_fc_w", "rho", "log_lr"} <= set(hp)


def test_a_resumed_one_shot_job_sees_the_same_meta_batches(sqlite_sessions):
    settings = _settings(data_dir=require_omniglot())
    spec = small_one_shot(iterations=5)
    reference = queued_job(sqlite_sessions, spec)
    assert execute_job(sqlite_sessions, reference, settings) == "succeeded"
    crashed = queued_job(sqlite_sessions, spec)

    def crash(record: dict[str, Any]) -> None:
        if record["iteration"] == 4:
            raise _Crash

    with contextlib.suppress(_Crash):
        execute_job(sqlite_sessions, crashed, settings, on_record=crash)
    with sqlite_sessions.begin() as s:
        s.execute(update(Job).where(Job.id == crashed).values(lease_until=utcnow() - timedelta(1)))
        repo.reap(s)
    assert execute_job(sqlite_sessions, crashed, settings) == "succeeded"
    assert _job(sqlite_sessions, crashed).attempts == 2
    # tasks are a function of (seed, iteration): the resumed run is the uninterrupted one
    a, b = _hparams(sqlite_sessions, crashed), _hparams(sqlite_sessions, reference)
    assert all(np.array_equal(a[k], b[k]) for k in b)


@pytest.mark.parametrize("where", ["unset", "empty"])
def test_a_one_shot_job_without_omniglot_fails_at_once_naming_the_setting(
    sqlite_sessions, tmp_path, where
):
    data_dir = None if where == "unset" else tmp_path / "data"
    job_id = queued_job(sqlite_sessions, small_one_shot())
    assert execute_job(sqlite_sessions, job_id, _settings(data_dir=data_dir)) == "failed"
    job = _job(sqlite_sessions, job_id)
    assert job.attempts == 1 and job.error["type"] == "DataMissing"
    assert "BILEVEL_DATA_DIR" in job.error["detail"]
    if data_dir is not None:
        assert str(data_dir / "omniglot") in job.error["detail"]
    assert "traceback" not in job.error  # a configuration error, not a crash


def test_task_interaction_on_digits_needs_no_upload(sqlite_sessions):
    spec = copy.deepcopy(example("task_interaction"))
    spec["problem"] = {"kind": "task_interaction", "dataset": "digits", "n_tasks": 10,
                       "n_train": 50, "n_val": 50}  # fmt: skip
    spec["inner"]["steps"] = 20
    spec["hypergradient"] = {"method": "truncated", "K": 5}
    spec["outer"].update(iterations=10, lr=0.02)
    spec["diagnostics"]["every"] = 5
    spec["device"] = "cpu"
    job_id = queued_job(sqlite_sessions, spec)
    assert execute_job(sqlite_sessions, job_id, _settings()) == "succeeded"
    summary = _job(sqlite_sessions, job_id).summary
    metrics = summary["metrics"]
    # ten classes as ten tasks: chance is 0.1; raw digits pixels do far better after 20 steps
    assert 0.5 < metrics["test_acc"] <= 1.0 and 0.5 < metrics["val_acc"] <= 1.0
    assert metrics["mean_coupling"] > 0 and metrics["rho"] > 0
    assert _hparams(sqlite_sessions, job_id)["B"].shape == (10, 10)
    with sqlite_sessions() as s:
        trace = repo.trace_columns(s, job_id)
    assert trace["outer_loss"][-1] < trace["outer_loss"][0]


def test_task_interaction_on_omniglot_without_the_data_directory_fails_naming_it(
    sqlite_sessions, tmp_path
):
    spec = copy.deepcopy(example("task_interaction"))
    spec["problem"] = {"kind": "task_interaction", "dataset": "omniglot", "n_tasks": 5}
    spec["device"] = "cpu"
    job_id = queued_job(sqlite_sessions, spec)
    outcome = execute_job(sqlite_sessions, job_id, _settings(data_dir=tmp_path))
    error = _job(sqlite_sessions, job_id).error
    assert outcome == "failed" and error["type"] == "DataMissing"
    assert f"BILEVEL_DATA_DIR={tmp_path}" in error["detail"]
    assert str(tmp_path / "omniglot") in error["detail"]
