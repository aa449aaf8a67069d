"""The runner against real stores: traces, checkpoints, exact resume, cancel, failure."""

from __future__ import annotations

import io
import json
import os
import uuid
from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import select, update

from jobs.specs.job import parse_spec
from jobs.store import repo
from jobs.store.models import Job, JobEvent, utcnow
from tests.factories import example, queued_job, tiny_spec
from worker.compile_cache import CACHES
from worker.runner import execute_job
from worker.settings import WorkerSettings

SETTINGS = WorkerSettings(flush_every_s=0.01, checkpoint_every_n=5, lease_s=30)


class _Crash(BaseException):
    """Stands in for a killed process: nothing in the runner catches it."""


def _trace(sessions, job_id):
    with sessions() as s:
        return repo.trace_columns(s, job_id)


def _hparams(sessions, job_id) -> dict[str, np.ndarray]:
    with sessions() as s:
        data = repo.load_artifact(s, job_id, "hparams").data
    with np.load(io.BytesIO(data)) as z:
        return {k: z[k] for k in z.files}


def test_a_job_succeeds_with_one_trace_point_per_iteration(sessions):
    job_id = queued_job(sessions, tiny_spec(iterations=25))
    assert execute_job(sessions, job_id, SETTINGS) == "succeeded"
    assert execute_job(sessions, job_id, SETTINGS) == "skipped"  # a duplicate delivery
    trace = _trace(sessions, job_id)
    assert trace["iteration"] == list(range(1, 26))
    assert sum(c is not None for c in trace["cosine"]) == len([1, 5, 10, 15, 20, 25])
    with sessions() as s:
        job = s.get(Job, job_id)
        events = s.scalars(
            select(JobEvent.to_status).where(JobEvent.job_id == job_id).order_by(JobEvent.id)
        ).all()
    assert job.status == "succeeded" and job.iteration == 25 and job.attempts == 1
    assert events == ["queued", "running", "succeeded"]
    assert job.summary["best_outer_loss"] == min(trace["outer_loss"])
    assert trace["outer_loss"][job.summary["best_iteration"] - 1] == min(trace["outer_loss"])
    assert "last_outer_loss" not in job.summary  # one name for the last: final_outer_loss
    hp = _hparams(sessions, job_id)["hparams"]
    assert hp.shape == (2,) and np.allclose(hp, job.summary["hparams"])


def test_final_outer_loss_is_the_loss_at_the_hparams_returned(sessions):
    # what one more hyper-iteration records first: the toy is deterministic, so the 13th
    # point of a 13-iteration job is f at the λ a 12-iteration job returns
    short = queued_job(sessions, tiny_spec(iterations=12))
    assert execute_job(sessions, short, SETTINGS) == "succeeded"
    longer = queued_job(sessions, tiny_spec(iterations=13))
    assert execute_job(sessions, longer, SETTINGS) == "succeeded"
    with sessions() as s:
        final = s.get(Job, short).summary["final_outer_loss"]
    assert final == pytest.approx(_trace(sessions, longer)["outer_loss"][12], rel=1e-12)
    assert final != _trace(sessions, short)["outer_loss"][11]  # not the last point's λ


# torch.compile's own internals warn about torch.jit; nothing of ours to act on
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_a_compiled_job_reports_its_compile_time_and_uses_the_shared_cache(
    sessions, tmp_path, monkeypatch
):
    # set, then delete: the test's end restores the variable as it was
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "unset")
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR")
    spec = tiny_spec(iterations=3)
    spec["hypergradient"]["compile"] = "on"
    job_id = queued_job(sessions, spec)
    settings = SETTINGS.model_copy(update={"compile_cache_dir": tmp_path / "compile"})
    assert execute_job(sessions, job_id, settings) == "succeeded"
    with sessions() as s:
        job = s.get(Job, job_id)
    assert job.summary["compile_s"] > 0
    compiled = job.summary["compile"]
    assert compiled["used"] is True and compiled["seconds"] == job.summary["compile_s"]
    assert compiled["reason"] == "hypergradient.compile is 'on'"
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "compile")
    # the compile time is kept for the next job of this kind and shapes, under the cache
    # the compile found its work in
    assert compiled["cache"] in CACHES
    times = json.loads((tmp_path / "compile" / "compile-times.json").read_text())
    assert [e[compiled["cache"]] for e in times.values()] == [
        pytest.approx(compiled["seconds"], abs=0.01)
    ]


def test_a_short_job_left_on_auto_runs_eagerly_and_says_why(sessions, tmp_path):
    spec = tiny_spec(iterations=3)  # compile "auto" by default
    job_id = queued_job(sessions, spec)
    settings = SETTINGS.model_copy(update={"compile_cache_dir": tmp_path / "compile"})
    assert execute_job(sessions, job_id, settings) == "succeeded"
    with sessions() as s:
        compiled = s.get(Job, job_id).summary["compile"]
    assert compiled["used"] is False and compiled["seconds"] == 0
    assert compiled["reason"].startswith("auto: estimated eager run")
    assert "< 10 x compile time 30 s" in compiled["reason"]


def test_a_crashed_attempt_resumes_from_its_checkpoint_exactly(sessions):
    spec = tiny_spec(iterations=23)
    reference = queued_job(sessions, spec)
    assert execute_job(sessions, reference, SETTINGS) == "succeeded"

    job_id = queued_job(sessions, spec)

    def crash(record):
        if record["iteration"] == 13:
            raise _Crash

    with pytest.raises(_Crash):
        execute_job(sessions, job_id, SETTINGS, on_record=crash)
    with sessions() as s:
        assert repo.load_artifact(s, job_id, "checkpoint").iteration == 10
    # the lease runs out; the reaper requeues; another worker resumes
    with sessions.begin() as s:
        s.execute(update(Job).where(Job.id == job_id).values(lease_until=utcnow() - timedelta(1)))
    with sessions.begin() as s:
        # the session's database is shared: other tests' claimed jobs may have expired too
        assert job_id in [j.id for j in repo.reap(s)]
    assert execute_job(sessions, job_id, SETTINGS, worker="other") == "succeeded"

    got, want = _trace(sessions, job_id), _trace(sessions, reference)
    assert got["iteration"] == list(range(1, 24))  # nothing missing, nothing doubled
    assert got["outer_loss"] == want["outer_loss"]  # bit-identical continuation
    np.testing.assert_array_equal(
        _hparams(sessions, job_id)["hparams"], _hparams(sessions, reference)["hparams"]
    )
    with sessions() as s:
        assert s.get(Job, job_id).attempts == 2


def test_cancel_stops_a_running_job_cooperatively(sessions):
    job_id = queued_job(sessions, tiny_spec(iterations=200))

    def cancel_at_5(record):
        if record["iteration"] == 5:
            with sessions.begin() as s:
                repo.cancel_job(s, repo.get_job(s, None, job_id))

    assert execute_job(sessions, job_id, SETTINGS, on_record=cancel_at_5) == "cancelled"
    with sessions() as s:
        job = s.get(Job, job_id)
    trace = _trace(sessions, job_id)
    assert job.status == "cancelled" and 5 <= job.iteration < 200
    assert trace["iteration"] == list(range(1, job.iteration + 1))


def test_a_diverging_job_fails_with_the_iteration_named(sessions):
    spec = example("quadratic")
    spec["inner"].update(lr=50.0, steps=300)
    spec["outer"]["iterations"] = 5
    job_id = queued_job(sessions, spec)
    assert execute_job(sessions, job_id, SETTINGS) == "failed"
    with sessions() as s:
        job = s.get(Job, job_id)
    assert job.error["type"] == "DivergenceError" and job.error["iteration"] == 1
    assert job.attempts == 1


def test_a_plugin_whose_factory_cannot_be_imported_fails_the_job_once_naming_it(
    sessions, monkeypatch
):
    import dataclasses

    from jobs.kinds import registry

    job_id = queued_job(sessions, tiny_spec(problem={"kind": "digits_mlp"}))
    # installed, but its problem module is gone (a half-upgraded image)
    broken = dataclasses.replace(registry.PLUGINS["digits_mlp"], factory="gone_mod:build")
    monkeypatch.setitem(registry.KINDS, "digits_mlp", broken)
    assert execute_job(sessions, job_id, SETTINGS) == "failed"
    with sessions() as s:
        job = s.get(Job, job_id)
    assert job.attempts == 1
    assert job.error["type"] == "PluginError"
    assert job.error["detail"].startswith(
        f"plugin package 'bilevel-digits-mlp' {broken.version}: cannot import its factory "
        "'gone_mod:build' for kind 'digits_mlp': ModuleNotFoundError"
    )
    assert "traceback" not in job.error


def test_a_lost_lease_stops_the_old_attempt_without_writing(sessions):
    job_id = queued_job(sessions, tiny_spec(iterations=100))

    def steal(record):
        if record["iteration"] == 3:
            with sessions.begin() as s:
                s.execute(
                    update(Job)
                    .where(Job.id == job_id)
                    .values(status="queued", attempts=Job.attempts + 1)
                )

    assert execute_job(sessions, job_id, SETTINGS, on_record=steal) == "lost"
    with sessions() as s:
        assert s.get(Job, job_id).status == "queued"
    assert max(_trace(sessions, job_id)["iteration"], default=0) < 3


def test_a_shutdown_checkpoints_the_job_and_releases_it_without_using_an_attempt(sessions):
    from worker import runner, shutdown

    spec = tiny_spec(iterations=20)
    reference = queued_job(sessions, spec)
    assert execute_job(sessions, reference, SETTINGS) == "succeeded"
    job_id = queued_job(sessions, spec)

    def sigterm_at_7(record):
        if record["iteration"] == 7:
            runner.request_shutdown()

    try:
        assert execute_job(sessions, job_id, SETTINGS, on_record=sigterm_at_7) == "released"
    finally:
        shutdown._requested.clear()
    with sessions() as s:
        job = s.get(Job, job_id)
        assert (job.status, job.iteration, job.max_attempts) == ("queued", 7, 4)
        assert repo.load_artifact(s, job_id, "checkpoint").iteration == 7
    assert execute_job(sessions, job_id, SETTINGS) == "succeeded"
    got, want = _trace(sessions, job_id), _trace(sessions, reference)
    assert got["iteration"] == list(range(1, 21)) and got["outer_loss"] == want["outer_loss"]


def test_store_writes_are_retried_through_a_connection_failure_then_given_up():
    from sqlalchemy.exc import OperationalError

    from worker.errors import StoreUnavailable
    from worker.retry import retrying

    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise OperationalError("INSERT", {}, Exception("server closed the connection"))
        return "ok"

    assert retrying(flaky, patience_s=5) == "ok" and len(calls) == 3

    def down():
        raise OperationalError("INSERT", {}, Exception("connection refused"))

    with pytest.raises(StoreUnavailable, match="connection refused"):
        retrying(down, patience_s=0.5)


def test_a_time_limit_counts_every_attempt_and_the_worker_ceiling_also_applies(sessions):
    job_id = queued_job(sessions, tiny_spec(iterations=100_000, time_limit_s=1.2))
    # an earlier attempt ran 1 s, as its last flush recorded
    with sessions.begin() as s:
        s.execute(update(Job).where(Job.id == job_id).values(summary={"run_s": 1.0}))
    assert execute_job(sessions, job_id, SETTINGS) == "failed"
    with sessions() as s:
        job = s.get(Job, job_id)
    assert job.error["type"] == "TimeLimitExceeded" and "time_limit_s=1.2" in job.error["detail"]
    assert "traceback" not in job.error
    # stopped about 0.2 s into this attempt, not 1.2 s
    assert 1.2 <= job.summary["run_s"] < 2.0
    assert job.error["iteration"] == job.iteration
    assert _trace(sessions, job_id)["iteration"] == list(range(1, job.iteration + 1))

    job_id = queued_job(sessions, tiny_spec(iterations=100_000, time_limit_s=60.0))
    ceiling = SETTINGS.model_copy(update={"max_job_time_s": 0.2})
    assert execute_job(sessions, job_id, ceiling) == "failed"
    with sessions() as s:
        job = s.get(Job, job_id)
    assert "max_job_time_s=0.2" in job.error["detail"] and job.attempts == 1


def test_a_message_claims_the_fair_choice_and_a_team_at_its_limit_waits(sessions):
    """The message names a job of a team at its limit: the worker takes another team's job,
    and with only that team's job left it defers (the job stays queued, unclaimed)."""
    limited = SETTINGS.model_copy(update={"max_running_jobs": 1})
    spec = tiny_spec(iterations=5)
    with sessions.begin() as s:
        team = repo.ensure_team(s, f"busy-{uuid.uuid4().hex[:8]}")
        first, second = (repo.create_job(s, team.id, parse_spec(spec))[0].id for _ in range(2))
        idle = repo.ensure_team(s, f"idle-{uuid.uuid4().hex[:8]}")
        other = repo.create_job(s, idle.id, parse_spec(spec))[0].id
    with sessions.begin() as s:
        assert repo.claim_job(s, first, "w1", 30) is not None  # "busy" runs one job now
    assert execute_job(sessions, second, limited) == "succeeded"
    with sessions() as s:
        assert s.get(Job, other).status == "succeeded"  # the idle team's job went instead
        job = s.get(Job, second)
        assert (job.status, job.attempts, job.worker) == ("queued", 0, None)
    assert execute_job(sessions, second, limited) == "deferred"  # "busy" is at its limit
    with sessions.begin() as s:  # the running job ends: the deferred one is next
        s.execute(update(Job).where(Job.id == first).values(status="succeeded"))
    assert execute_job(sessions, second, limited) == "succeeded"
    assert execute_job(sessions, second, limited) == "skipped"  # nothing queued is left
